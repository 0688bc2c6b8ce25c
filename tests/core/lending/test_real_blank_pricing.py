"""Blank cells in the columns a loan is identified and priced by, on rows of a real public file
(tests/core/fixtures/kaggle_credit_risk_head.csv: 4 of its 60 rows have no interest rate).

A blank rate used to be priced as an interest-free loan (a negative expected profit, a skewed
cut-off) and a blank id stored as an application without an id: the config now refuses
``nullable: true`` on those roles, and the gate quarantines such rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finflow_core.errors import ConfigError
from finflow_core.lending.config import ENV_HOME, parse_config
from finflow_core.lending.intake.validation import validate_batch
from finflow_core.lending.strategy import LoanValues

CSV = Path(__file__).parents[1] / "fixtures" / "kaggle_credit_risk_head.csv"


def _document(**nullable: bool) -> dict:
    def col(spec: dict) -> dict:
        return {**spec, "nullable": True} if nullable.get(spec["name"]) else spec

    return {
        "dataset": {"name": "kaggle-credit-risk", "columns": [col(c) for c in [
            {"name": "loan_ref", "type": "string", "role": "id", "max_length": 16},
            {"name": "person_age", "type": "integer", "role": "protected", "min": 18, "max": 100},
            {"name": "person_income", "type": "float", "role": "income", "min": 0},
            {"name": "person_home_ownership", "type": "category",
             "categories": ["RENT", "OWN", "MORTGAGE", "OTHER"]},
            {"name": "person_emp_length", "type": "float", "nullable": True, "min": 0, "max": 60},
            {"name": "loan_intent", "type": "category", "categories": [
                "EDUCATION", "MEDICAL", "VENTURE", "PERSONAL", "DEBTCONSOLIDATION",
                "HOMEIMPROVEMENT"]},
            {"name": "loan_grade", "type": "category", "categories": list("ABCDEFG")},
            {"name": "loan_amnt", "type": "float", "role": "loan_amount", "min": 100},
            {"name": "loan_int_rate", "type": "float", "role": "interest_rate", "percent": True,
             "min": 0, "max": 0.5},
            {"name": "loan_status", "type": "integer", "role": "target", "min": 0, "max": 1},
            {"name": "loan_percent_income", "type": "float", "min": 0, "max": 5},
            {"name": "cb_person_default_on_file", "type": "category", "categories": ["Y", "N"]},
            {"name": "cb_person_cred_hist_length", "type": "integer", "min": 0, "max": 80},
        ]]},
        "pricing": {"term_months": 36},
    }


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_HOME, str(tmp_path))
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)


@pytest.mark.parametrize(("column", "role"), [
    ("loan_int_rate", "interest_rate"), ("loan_ref", "id"), ("loan_amnt", "loan_amount")])
def test_a_column_every_loan_is_priced_by_cannot_be_nullable(column: str, role: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_document(**{column: True}))
    message = str(err.value)
    assert f"({column}).nullable" in message
    assert f"role {role} cannot be nullable" in message and "not_null" in message


def test_a_nullable_term_column_is_refused_with_the_assumed_term_named() -> None:
    doc = _document()
    doc["pricing"] = {}
    doc["dataset"]["columns"].append({"name": "months", "type": "integer", "role": "term",
                                      "nullable": True})
    with pytest.raises(ConfigError, match=r"\(months\)\.nullable.*pricing: \{term_months"):
        parse_config(doc)


def test_rows_without_a_rate_are_quarantined_never_priced_interest_free() -> None:
    raw = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    blank = raw.loc[raw["loan_int_rate"] == "", "loan_ref"].tolist()
    assert len(blank) == 4  # the file as published
    cfg = parse_config(_document())
    report = validate_batch(CSV, cfg, require_target=True)
    assert report.rows_in == len(raw) == report.rows_valid + report.rows_quarantined
    issues = report.issues
    not_null = issues[(issues["column"] == "loan_int_rate") & (issues["rule"] == "not_null")]
    assert sorted(not_null["application_id"]) == sorted(blank)
    values = LoanValues.from_frame(report.valid, cfg)
    assert np.isfinite(values.margin).all() and (values.margin > 0).all()
