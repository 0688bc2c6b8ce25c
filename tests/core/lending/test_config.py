"""Config: the shipped default, overrides by path and FINFLOW_CONFIG, and bad configs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from finflow_core.errors import ConfigError
from finflow_core.lending.config import (
    ENV_CONFIG,
    ENV_HOME,
    default_config_path,
    load_config,
    parse_config,
)


def _cols(raw: dict[str, Any]) -> list[dict[str, Any]]:
    return raw["dataset"]["columns"]


def _index(raw: dict[str, Any], name: str) -> int:
    return next(i for i, c in enumerate(_cols(raw)) if c["name"] == name)


def test_default_config_declares_the_smb_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    cfg = load_config()
    assert cfg.source == str(default_config_path())
    assert len(cfg.sha256) == 64
    assert cfg.id_column == "application_id"
    assert cfg.target_column == "default"
    assert (cfg.amount_column, cfg.rate_column, cfg.term_column) == (
        "loan_amount", "interest_rate", "term_months"
    )
    assert cfg.date_column == "application_date"
    # id, date and target never feed the model
    assert not {"application_id", "application_date", "default"} & set(cfg.feature_names)
    assert cfg.categorical_features == ("industry", "region", "collateral")
    assert cfg.feature_names[-3:] == ("loan_to_income", "total_debt_to_income", "revenue_per_employee")
    assert "default" not in {c.name for c in cfg.input_columns}
    assert cfg.column("credit_score").min == 300 and cfg.column("credit_score").max == 850
    assert cfg.monitoring.psi_watch == 0.10 and cfg.monitoring.psi_alert == 0.20
    assert cfg.strategy.automation_target == 0.70
    assert cfg.model.cv_folds == 5


def test_config_path_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      default_raw: dict[str, Any]) -> None:
    raw = copy.deepcopy(default_raw)
    raw["dataset"]["name"] = "override-by-path"
    raw["strategy"]["automation_target"] = 0.8
    path = tmp_path / "lender.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv(ENV_HOME, str(tmp_path))

    by_path = load_config(path)
    assert by_path.dataset_name == "override-by-path"
    assert by_path.strategy.automation_target == 0.8
    assert by_path.source == str(path)

    monkeypatch.setenv(ENV_CONFIG, str(path))
    by_env = load_config()
    assert by_env.dataset_name == "override-by-path"
    assert by_env.sha256 == by_path.sha256
    # relative paths are resolved against FINFLOW_HOME
    assert by_env.paths.models_dir == tmp_path.resolve() / "models"
    assert by_env.paths.database_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'finflow.db'}"


def test_missing_and_malformed_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert exc.value.key == "path"
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def _drop_role(raw: dict[str, Any], role: str) -> None:
    raw["dataset"]["columns"] = [c for c in _cols(raw) if c.get("role") != role]


C6 = "dataset.columns[6] (credit_score)"
BAD_CONFIGS = [
    ("missing id role", lambda r: _drop_role(r, "id"), "dataset.columns", "role 'id'"),
    ("missing target", lambda r: _drop_role(r, "target"), "dataset.columns", "role 'target'"),
    ("two amount columns",
     lambda r: _cols(r)[_index(r, "existing_debt")].update(role="loan_amount"),
     "dataset.columns", "role 'loan_amount'"),
    ("unknown type", lambda r: _cols(r)[_index(r, "credit_score")].update(type="decimal"),
     f"{C6}.type", "must be one of string, integer, float, category, date; got 'decimal'"),
    ("unknown role", lambda r: _cols(r)[_index(r, "credit_score")].update(role="score"),
     f"{C6}.role", "must be one of id, feature"),
    ("ratio over a category",
     lambda r: r["dataset"]["ratios"].append(
         {"name": "x", "numerator": ["industry"], "denominator": ["annual_revenue"]}),
     "dataset.ratios[3] (x).numerator", "'industry' is a category column, not a numeric column"),
    ("ratio over an unknown column",
     lambda r: r["dataset"]["ratios"].append(
         {"name": "x", "numerator": ["loan_amount"], "denominator": ["turnover"]}),
     "dataset.ratios[3] (x).denominator", "'turnover' is not a declared column"),
    ("ratio over a misspelt column",
     lambda r: r["dataset"]["ratios"].append(
         {"name": "x", "numerator": ["loan_amount", "existing_dept"], "denominator": "annual_revenue"}),
     "dataset.ratios[3] (x).numerator[1]",
     "'existing_dept' is not a declared column; did you mean existing_debt?"),
    ("duplicate column", lambda r: _cols(r).append(copy.deepcopy(_cols(r)[_index(r, "region")])),
     "dataset.columns[16] (region)", "'region' is declared twice"),
    ("ratio named like a column",
     lambda r: r["dataset"]["ratios"].append(
         {"name": "credit_score", "numerator": ["loan_amount"], "denominator": ["annual_revenue"]}),
     "dataset.ratios[3] (credit_score)", "'credit_score' is declared twice"),
    ("min above max", lambda r: _cols(r)[_index(r, "credit_score")].update(min=900),
     f"{C6}.min", "min 900 is above max 850"),
    ("non-numeric min", lambda r: _cols(r)[_index(r, "credit_score")].update(min="low"),
     f"{C6}.min", "must be a number, got 'low'"),
    ("misspelt column name keeps its spelling",
     lambda r: _cols(r)[_index(r, "credit_score")].update(name="credit_scor", min="low"),
     "dataset.columns[6] (credit_scor).min", "must be a number, got 'low'"),
    ("psi_watch equal to psi_alert", lambda r: r["monitoring"].update(psi_watch=0.2),
     "monitoring", "psi_watch < psi_alert"),
    ("psi_watch above psi_alert", lambda r: r["monitoring"].update(psi_watch=0.3),
     "monitoring", "psi_watch < psi_alert"),
    ("category without categories", lambda r: _cols(r)[_index(r, "industry")].pop("categories"),
     "dataset.columns[12] (industry).categories", "needs its categories"),
    ("text loan amount", lambda r: _cols(r)[_index(r, "loan_amount")].update(type="string"),
     "dataset.columns[3] (loan_amount).type", "loan_amount column must be numeric"),
    ("unknown column setting", lambda r: _cols(r)[0].update(colour="red"),
     "dataset.columns[0] (application_id).colour", "unknown setting (allowed: name, type"),
    ("misspelt column setting", lambda r: _cols(r)[6].update(nulable=True),
     f"{C6}.nulable", "unknown setting; did you mean nullable?"),
    ("YAML 1.1 boolean", lambda r: _cols(r)[6].update(nullable="yes"),
     f"{C6}.nullable", "must be true or false, got 'yes' (YAML 1.2"),
    ("no dataset", lambda r: r.pop("dataset"), "dataset", "'dataset' section"),
    ("empty columns", lambda r: r["dataset"].update(columns=[]), "dataset.columns", "non-empty"),
    ("too many segments",
     lambda r: r["dataset"].update(segments=["industry", "region", "collateral", "application_id"]),
     "dataset.segments", "at most 3"),
    ("numeric segment", lambda r: r["dataset"].update(segments=["loan_amount"]),
     "dataset.segments", "'loan_amount'"),
    ("fraction out of range", lambda r: r["economics"].update(loss_given_default=1.5),
     "economics.loss_given_default", "between 0 and 1"),
    ("automation target out of range", lambda r: r["strategy"].update(automation_target=-0.1),
     "strategy.automation_target", "between 0 and 1"),
    ("unknown economics setting", lambda r: r["economics"].update(margin=1),
     "economics.margin", "unknown setting"),
    ("non-numeric economics", lambda r: r["economics"].update(review_cost="cheap"),
     "economics.review_cost", "must be a number, got 'cheap'"),
    ("quoted number", lambda r: r["economics"].update(review_cost="120"),
     "economics.review_cost", "got the text '120': write it without quotes"),
    ("negative cost", lambda r: r["economics"].update(review_cost=-1),
     "economics.review_cost", "cannot be negative"),
    ("no size limit by 1e400", lambda r: r["limits"].update(max_file_mb=float("inf")),
     "limits.max_file_mb", "must be a finite number, got inf"),
    ("an infinite cost", lambda r: r["economics"].update(review_cost=float("inf")),
     "economics.review_cost", "must be a finite number"),
    ("unknown section", lambda r: r.update(modle={}), "modle", "did you mean model?"),
    ("unknown model setting", lambda r: r["model"].update(depth=3), "model.depth", "unknown setting"),
    ("bad calibration", lambda r: r["model"].update(calibration="platt"),
     "model.calibration", "isotonic"),
    ("one fold", lambda r: r["model"].update(cv_folds=1), "model.cv_folds", "at least 2"),
    ("non-integer cv_folds", lambda r: r["model"].update(cv_folds="five"),
     "model.cv_folds", "whole number"),
    ("no candidates", lambda r: r["model"].update(candidates=[]), "model.candidates", "at least one"),
    ("candidates as a bare string", lambda r: r["model"].update(candidates="lightgbm"),
     "model.candidates", "must be a list"),
    ("unknown candidate", lambda r: r["model"].update(candidates=["xgboost"]),
     "model.candidates[0]", "'xgboost'"),
    ("zero reason codes", lambda r: r["model"].update(reason_codes=0),
     "model.reason_codes", "at least 1"),
    ("economics not a mapping", lambda r: r.update(economics=[0.45]),
     "economics", "must be a mapping"),
    ("zero PSI floor", lambda r: r["monitoring"].update(floor=0), "monitoring.floor", "above 0"),
    ("a single PSI bin", lambda r: r["monitoring"].update(bins=1), "monitoring", "bins >= 2"),
    ("no features",
     lambda r: [c.update(model_input=False) for c in _cols(r) if c.get("role", "feature") != "target"],
     "dataset.columns", "no model features"),
]


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"),
    [pytest.param(m, k, f, id=label) for label, m, k, f in BAD_CONFIGS],
)
def test_bad_config_raises_config_error_naming_the_key(
    default_raw: dict[str, Any], mutate: Any, key: str, fragment: str
) -> None:
    raw = copy.deepcopy(default_raw)
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    assert exc.value.key == key
    assert fragment in str(exc.value)
    assert str(exc.value).startswith(f"config error at {key}: ")
    assert "\n" not in str(exc.value)  # one line, no pydantic dump
    assert exc.value.to_dict()["key"] == key
    assert exc.value.exit_code == 3


@pytest.mark.parametrize("ctype", ["string", "date"])
def test_text_or_date_column_is_never_a_silent_model_feature(
    default_raw: dict[str, Any], ctype: str
) -> None:
    raw = copy.deepcopy(default_raw)
    _cols(raw).append({"name": "notes", "type": ctype})
    try:
        cfg = parse_config(raw)
    except ConfigError as exc:
        assert exc.key.startswith("dataset.columns")
    else:
        assert "notes" not in cfg.feature_names
