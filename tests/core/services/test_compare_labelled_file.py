"""``models compare --data FILE``: the rows of a labelled file the quality gate leaves out are
counted in what the comparison says it was made on, and a file with none left is refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from store_helpers import Lending  # noqa: F401 - fixtures come from the plugin

from finflow_core.cli import main
from finflow_core.errors import BatchRejected
from finflow_core.lending.synthetic import generate_applications
from finflow_core.services.access import Principal
from finflow_core.services.model_comparison import ComparedModel, shortfalls

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

ANALYST = Principal(None, "ann.analyst", frozenset({"analyst"}))


def labelled(path: Path, rows: int, blank_outcomes: int) -> Path:
    df = generate_applications(rows, seed=23).astype({"default": object})
    df.loc[: blank_outcomes - 1, "default"] = ""  # outcome not known yet
    df.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def test_the_rows_left_out_of_a_labelled_file_are_counted_by_rule(ff_sqlite: Lending,
                                                                   tmp_path: Path) -> None:
    models = ff_sqlite.wb(ANALYST).models
    result = models.compare(ff_sqlite.version, data=labelled(tmp_path / "holdout.csv", 400, 25))
    assert result.rows == 375
    assert result.source == ("the 375 applications with outcomes in holdout.csv (25 of its 400 "
                             "rows quarantined and left out: not_null ×25)")
    whole = models.compare(ff_sqlite.version, data=labelled(tmp_path / "whole.csv", 400, 0))
    assert whole.source == "the 400 applications with outcomes in whole.csv"


def test_a_labelled_file_with_no_row_left_is_refused_naming_the_rules(ff_sqlite: Lending,
                                                                      tmp_path: Path) -> None:
    models = ff_sqlite.wb(ANALYST).models
    with pytest.raises(BatchRejected) as err:  # was: ValueError from LightGBM, exit 1
        models.compare(ff_sqlite.version, data=labelled(tmp_path / "pending.csv", 40, 40))
    assert err.value.exit_code == 4 and err.value.reason == "no_valid_rows"
    assert str(err.value) == ("pending.csv: none of its 40 rows can be compared on: all were "
                              "quarantined (not_null ×40); a labelled file needs the columns the "
                              "model reads and each row's outcome")


def test_a_file_with_one_outcome_only_has_no_auc_and_stays_strict_json(
        ff_sqlite: Lending, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from store_helpers import PASSWORD

    df = generate_applications(300, seed=23)
    df[df["default"] == 0].to_csv(tmp_path / "repaid.csv", index=False)  # no default among them
    models = ff_sqlite.wb(ANALYST).models
    result = models.compare(ff_sqlite.version, data=tmp_path / "repaid.csv")
    assert result.candidate.auc != result.candidate.auc  # NaN: not measurable
    assert result.audit_details()["candidate"]["auc"] is None  # the trail's JSON is strict

    ff_sqlite.users()
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["--user", "ann.analyst", "models", "compare", ff_sqlite.version,
                 "--data", str(tmp_path / "repaid.csv"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out, parse_constant=_refuse)  # was: "auc": NaN
    assert printed["candidate"]["auc"] is None and printed["champion"]["auc"] is None
    assert main(["--user", "ann.analyst", "models", "compare", ff_sqlite.version,
                 "--data", str(tmp_path / "repaid.csv")]) == 0
    text = capsys.readouterr().out
    assert "AUC nan" not in text and text.count("AUC not measurable (one outcome only)") == 2


def _refuse(constant: str) -> None:
    raise ValueError(f"not JSON: {constant}")


def test_a_lender_without_pricing_compares_models_without_a_profit() -> None:
    """The Taiwan credit-card file has no rate (cut-off by max_bad_rate): its profit is NaN,
    and ``models compare`` (and so ``promote``) ended in 'unexpected error (ValueError:
    cannot convert float NaN to integer)'."""
    def model(version: str, auc: float) -> ComparedModel:
        return ComparedModel(version=version, model="lightgbm", trained_rows=20_000, auc=auc,
                             calibration_error=0.01, brier=0.14, mean_probability=0.22,
                             profit=float("nan"), automation_rate=0.72, low_edge=0.15,
                             high_edge=0.34)

    assert shortfalls(model("cand", 0.780), model("champ", 0.776), "TWD") == ()
    assert shortfalls(model("cand", 0.770), model("champ", 0.776), "TWD") == (
        "lower AUC: 0.770 against 0.776",)
