"""The declared config: YAML 1.2, strict values, estimator parameters, pricing, protected
columns, value policies, the new settings, and configs that are immutable values."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest

from finflow_core.errors import ConfigError
from finflow_core.lending.config import (
    Config,
    FrozenParams,
    load_config,
    load_yaml,
    parse_config,
    protected_hint,
)


def _cols(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return raw["dataset"]["columns"]


def _col(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in _cols(raw) if c["name"] == name)


def _error(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert "\n" not in str(exc.value)
    return exc.value


@pytest.fixture()
def raw(default_raw: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(default_raw)


def _unpriced(raw: dict[str, Any]) -> dict[str, Any]:
    """The demo without its interest-rate column, cut-off by a bad-rate target."""
    raw["dataset"]["columns"] = [c for c in _cols(raw) if c.get("role") != "interest_rate"]
    raw["strategy"]["cutoff"] = {"by": "max_bad_rate", "value": 0.05}
    return raw


# -- YAML 1.2 --------------------------------------------------------------------------------

def test_yaml_yes_and_no_stay_text_and_codes_keep_their_spelling() -> None:
    doc = load_yaml("a: [yes, no, on, off, Y, N]\nb: [true, false]\nc: [01, 1.50, 7]\n"
                    "d: 2026-01-05\ne: 1e-4\nf: ~\n")
    assert doc["a"] == ["yes", "no", "on", "off", "Y", "N"]
    assert doc["b"] == [True, False]
    assert [getattr(v, "yaml_text", None) for v in doc["c"]] == ["01", "1.50", "7"]
    assert doc["d"] == "2026-01-05"  # YAML 1.1 would make a date of it
    assert doc["e"] == pytest.approx(1e-4)  # YAML 1.1 (PyYAML) reads 1e-4 as text
    assert doc["f"] is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lender.yaml"
    path.write_text(text)
    return path


def test_a_category_list_of_yes_and_no_loads_as_text(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "fixtures").joinpath("other_lender.yaml").read_text()
    text = text.replace('categories: ["yes", "no"]', "categories: [yes, no]")
    assert "categories: [yes, no]" in text
    cfg = load_config(_write(tmp_path, text))
    assert cfg.column("has_guarantor").categories == ("yes", "no")


def test_duplicate_keys_and_bad_yaml_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, "dataset:\n  name: a\n  name: b\n"))
    assert exc.value.key == "name" and "written twice" in str(exc.value) and "line 3" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, "dataset: [unclosed\n"))
    assert "not valid YAML at line 2" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(("value", "shown"), [(True, "true"), (None, "null"), (1.5, "1.5")])
def test_a_category_yaml_made_non_text_must_be_quoted(raw: dict[str, Any], value: Any,
                                                      shown: str) -> None:
    _col(raw, "collateral")["categories"] = ["none", value]
    err = _error(raw)
    assert err.key == "dataset.columns[14] (collateral).categories[1]"
    assert f'write it in quotes ("{shown}")' in str(err)


def test_integer_categories_are_accepted_as_their_text(tmp_path: Path, raw: dict[str, Any]) -> None:
    _col(raw, "collateral")["categories"] = [0, 1, 2]
    assert parse_config(raw).column("collateral").categories == ("0", "1", "2")
    text = (Path(__file__).parents[1] / "fixtures").joinpath("other_lender.yaml").read_text()
    text = text.replace("categories: [retail, services, industry, farming]",
                        "categories: [01, 02, 10, 11]")
    assert load_config(_write(tmp_path, text)).column("sector").categories == ("01", "02", "10", "11")


# -- model parameters -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("candidate", "params", "key", "fragment"),
    [
        ("lightgbm", {"n_estimator": 100}, "model.lightgbm.n_estimator",
         "unknown parameter of LightGBM; did you mean n_estimators?"),
        ("lightgbm", {"n_estimators": "300"}, "model.lightgbm.n_estimators", "number in quotes"),
        ("lightgbm", {"num_leaves": 7.5}, "model.lightgbm.num_leaves", "must be a whole number"),
        ("lightgbm", {"max_bin": "big"}, "model.lightgbm.max_bin",
         "LightGBM refuses it: Parameter max_bin should be of type int"),
        ("random_forest", {"n_estimator": 100}, "model.random_forest.n_estimator",
         "unknown parameter of RandomForestClassifier; did you mean n_estimators?"),
        ("random_forest", {"max_features": "sqrtt"}, "model.random_forest.max_features",
         "or None, got 'sqrtt' (RandomForestClassifier)"),
        ("random_forest", {"min_samples_leaf": "20"}, "model.random_forest.min_samples_leaf",
         "number in quotes"),
        ("hist_gradient_boosting", {"learning_rate": -1.0},
         "model.hist_gradient_boosting.learning_rate", "must be a float in the range (0.0, inf)"),
        ("hist_gradient_boosting", {"max_iters": 100}, "model.hist_gradient_boosting.max_iters",
         "did you mean max_iter?"),
    ],
)
def test_model_parameters_are_checked_against_the_estimator(
    raw: dict[str, Any], candidate: str, params: dict[str, Any], key: str, fragment: str
) -> None:
    raw["model"][candidate] = {**raw["model"].get(candidate, {}), **params}
    err = _error(raw)
    assert err.key == key
    assert fragment in str(err)


def test_lightgbm_core_parameters_and_aliases_are_accepted(raw: dict[str, Any],
                                                           capfd: pytest.CaptureFixture) -> None:
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "num_threads": 1, "max_bin": 63,
                                "extra_trees": True, "min_data_in_bin": 5}
    cfg = parse_config(raw)
    assert cfg.model.params["lightgbm"]["max_bin"] == 63
    raw["model"]["lightgbm"]["extra_trees"] = "yes"
    assert "extra_trees" in _error(raw).key
    assert "[LightGBM]" not in capfd.readouterr().err  # LightGBM's own complaint is held back


# -- pricing and the cut-off rule ---------------------------------------------------------------

def test_pricing_from_the_file_is_mode_file(raw: dict[str, Any]) -> None:
    cfg = parse_config(raw)
    assert cfg.pricing.mode == "file" and cfg.pricing.assumed == frozenset()
    assert (cfg.pricing.rate_column, cfg.pricing.term_column) == ("interest_rate", "term_months")
    assert cfg.strategy.cutoff.by == "profit"


def test_pricing_from_config_is_an_assumption(raw: dict[str, Any]) -> None:
    raw["dataset"]["columns"] = [c for c in _cols(raw) if c.get("role") not in ("interest_rate", "term")]
    raw["pricing"] = {"interest_rate": 0.12, "term_months": 36}
    cfg = parse_config(raw)
    assert cfg.pricing.mode == "config"
    assert cfg.pricing.assumed == {"interest_rate", "term_months"}
    assert cfg.rate_column is None and cfg.term_column is None
    assert cfg.pricing.to_dict()["assumed"] == ["interest_rate", "term_months"]
    assert "interest_rate" not in cfg.feature_names  # a constant is no model input


def test_rate_by_band_with_the_files_term(raw: dict[str, Any]) -> None:
    raw["dataset"]["columns"] = [c for c in _cols(raw) if c.get("role") != "interest_rate"]
    raw["pricing"] = {"rate_by_band": {"low": 0.09, "medium": 0.14}}
    cfg = parse_config(raw)
    assert cfg.pricing.assumed == {"rate_by_band"} and cfg.pricing.term_column == "term_months"


def test_no_pricing_needs_a_target_cut_off(raw: dict[str, Any]) -> None:
    cfg = parse_config(_unpriced(copy.deepcopy(raw)))
    assert cfg.pricing.mode == "none" and not cfg.pricing.priced
    assert (cfg.strategy.cutoff.by, cfg.strategy.cutoff.value) == ("max_bad_rate", 0.05)
    raw["dataset"]["columns"] = [c for c in _cols(raw) if c.get("role") != "interest_rate"]
    err = _error(raw)
    assert err.key == "strategy.cutoff"
    assert "needs pricing" in str(err) and "max_bad_rate" in str(err) and "approval_rate" in str(err)


@pytest.mark.parametrize(
    ("pricing", "cutoff", "key", "fragment"),
    [
        ({"interest_rate": 0.1}, None, "pricing.interest_rate", "already has an interest_rate column"),
        ({"term_months": 24}, None, "pricing.term_months", "already has a term column"),
        ({"interest_rate": 0.1, "rate_by_band": {"low": 0.1, "medium": 0.2}}, None,
         "pricing.rate_by_band", "not both"),
        ({"rate_by_band": {"low": 0.1, "medium": 0.2, "high": 0.3}}, None,
         "pricing.rate_by_band.high", "declined automatically"),
        ({"interest_rate": "12%"}, None, "pricing.interest_rate", "must be a number"),
        (None, {"by": "max_bad_rate"}, "strategy.cutoff.value", "needs a value above 0"),
        (None, {"by": "profit", "value": 0.5}, "strategy.cutoff.value", "takes no value"),
        (None, {"by": "bad_rate", "value": 0.1}, "strategy.cutoff.by", "did you mean max_bad_rate?"),
    ],
)
def test_pricing_and_cutoff_mistakes(raw: dict[str, Any], pricing: Any, cutoff: Any, key: str,
                                     fragment: str) -> None:
    if pricing is not None:
        raw["pricing"] = pricing
    if cutoff is not None:
        raw["strategy"]["cutoff"] = cutoff
    err = _error(raw)
    assert err.key == key
    assert fragment in str(err)


def test_a_rate_without_a_term_and_a_term_without_a_rate(raw: dict[str, Any]) -> None:
    raw["dataset"]["columns"] = [c for c in _cols(raw) if c.get("role") not in ("interest_rate", "term")]
    raw["pricing"] = {"interest_rate": 0.1}
    assert "a rate needs a term" in str(_error(raw))
    raw["pricing"] = {"term_months": 36}
    raw["strategy"]["cutoff"] = {"by": "approval_rate", "value": 0.6}
    assert "a term without a rate" in str(_error(raw))


# -- protected characteristics and value policies -------------------------------------------

def _with_sex(raw: dict[str, Any], **extra: Any) -> dict[str, Any]:
    _cols(raw).append({"name": "owner_sex", "type": "category", "categories": ["F", "M"],
                       "role": "protected", "nullable": True, **extra})
    return raw


def test_a_protected_column_is_kept_but_never_a_model_input(raw: dict[str, Any]) -> None:
    cfg = parse_config(_with_sex(raw, required=False))
    assert "owner_sex" not in cfg.feature_names and "owner_sex" not in cfg.categorical_features
    assert cfg.protected_columns == ("owner_sex",)
    assert cfg.column("owner_sex").model_input is False
    assert "owner_sex" in {c.name for c in cfg.batch_columns}
    assert "owner_sex" not in {c.name for c in cfg.input_columns}  # may be absent from a file
    assert [c.name for c in cfg.optional_columns] == ["owner_sex"]


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ({"model_input": True}, "model_input", "never a model input"),
        ({"reason_category": "x"}, "reason_category", "never given as a reason"),
    ],
)
def test_a_protected_column_cannot_feed_the_model(raw: dict[str, Any], extra: dict[str, Any],
                                                  key: str, fragment: str) -> None:
    err = _error(_with_sex(raw, **extra))
    assert err.key == f"dataset.columns[16] (owner_sex).{key}"
    assert fragment in str(err)


def test_a_protected_column_is_never_a_ratio_input(raw: dict[str, Any]) -> None:
    _cols(_with_sex(raw))[-1].update(type="integer", categories=[])
    raw["dataset"]["ratios"].append({"name": "x", "numerator": "owner_sex", "denominator": "loan_amount"})
    assert "protected characteristic" in str(_error(raw))


def test_only_protected_columns_may_be_absent(raw: dict[str, Any]) -> None:
    _col(raw, "region")["required"] = False
    err = _error(raw)
    assert err.key == "dataset.columns[13] (region).required"
    assert "only a protected column may be absent" in str(err)


def test_feature_names_that_suggest_a_protected_characteristic_warn(raw: dict[str, Any]) -> None:
    assert parse_config(raw).warnings == ()
    _cols(raw).append({"name": "ownerGender", "type": "category", "categories": ["F", "M"]})
    _cols(raw).append({"name": "mortgage_balance", "type": "float"})
    cfg = parse_config(raw)
    assert len(cfg.warnings) == 1
    assert "'ownerGender'" in cfg.warnings[0] and "role: protected" in cfg.warnings[0]
    assert [protected_hint(n) for n in ("applicant_age", "ethnicity", "average", "stage",
                                        "women_owned", "MaritalStatus")] == [
        "age", "ethnicity", None, None, "women", "marital"]


def test_unknown_code_policy_defaults_and_checks(raw: dict[str, Any]) -> None:
    cfg = parse_config(raw)
    assert cfg.column("industry").on_unknown == "missing"
    assert cfg.column("industry").unknown_maps_to == "missing"
    assert cfg.column("credit_score").on_unknown is None
    _col(raw, "collateral").update(on_unknown="other", other="none")
    assert parse_config(raw).column("collateral").unknown_maps_to == "none"
    _col(raw, "collateral")["other"] = "some"
    assert "must be one of the declared categories" in str(_error(raw))
    _col(raw, "collateral").update(on_unknown="quarantine", other=None)
    assert parse_config(raw).column("collateral").maps_unknown is False
    _col(raw, "credit_score")["on_unknown"] = "missing"
    assert _error(raw).key == "dataset.columns[6] (credit_score).on_unknown"


# -- the new settings and what a config is ----------------------------------------------------

def test_new_settings_have_their_defaults_and_are_checked(raw: dict[str, Any]) -> None:
    cfg = parse_config(raw)
    assert (cfg.monitoring.min_rows, cfg.monitoring.confidence) == (200, 0.95)
    assert (cfg.review.sla_hours, cfg.display.timezone) == (24.0, "UTC")
    assert cfg.lender is not None and cfg.lender.name == "Example Business Lending (demo)"
    assert parse_config({k: v for k, v in raw.items() if k != "lender"}).lender is None
    assert (cfg.review.override_distance, cfg.review.four_eyes.default_limit) == (None, None)
    assert cfg.review.four_eyes.outcomes == ("approve",) and cfg.letters.template is None
    assert cfg.model.max_quarantine_share == 0.05
    raw["lender"] = {"name": "Acme Capital", "address": "1 Main St\n  Springfield\n",
                     "contact": ["credit@acme.example"]}
    raw["display"] = {"timezone": "Europe/Berlin"}
    cfg = parse_config(raw)
    assert cfg.lender.address == ("1 Main St", "Springfield")
    assert cfg.display.timezone == "Europe/Berlin"
    raw["monitoring"]["confidence"] = 1.0
    assert _error(raw).key == "monitoring.confidence"
    raw["monitoring"]["confidence"] = 0.9
    raw["lender"] = {"address": "x"}
    assert _error(raw).key == "lender.name"


def test_configs_are_immutable_hashable_picklable_values(
    config: Config, small_raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert config.audit is not None
    monkeypatch.setenv("FINFLOW_ANCHOR_DIR", str(config.audit.anchor_dir))  # as when it was read
    again = parse_config(copy.deepcopy(small_raw), source="small-test-config")
    assert again == config and hash(again) == hash(config) and again is not config
    assert {config: 1}[again] == 1
    shipped = pickle.loads(pickle.dumps(config))
    assert shipped == config and shipped.feature_names == config.feature_names
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dataset_name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.columns[0].name = "x"  # type: ignore[misc]
    params = config.model.params
    params["lightgbm"]["num_leaves"] = 999  # a copy: the config does not change
    assert config.model.params["lightgbm"]["num_leaves"] == 7
    assert isinstance(config.model.lightgbm, FrozenParams)
    with pytest.raises(TypeError):
        config.model.lightgbm["num_leaves"] = 1  # type: ignore[index]
    other = dataclasses.replace(config, columns=config.columns[:-1])
    assert other != config


def test_empty_sections_take_their_defaults(raw: dict[str, Any]) -> None:
    raw["economics"] = None
    raw["review"] = None
    cfg = parse_config(raw)
    assert cfg.economics.loss_given_default == 0.45 and cfg.review.claim_minutes == 30.0


def test_estimator_checks_can_be_left_to_training(raw: dict[str, Any]) -> None:
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "n_estimator": 5}
    assert parse_config(copy.deepcopy(raw), check_estimators=False).model.lightgbm["n_estimator"] == 5
    assert _error(raw).key == "model.lightgbm.n_estimator"
