"""The public SBA national loans file (``SBAnational.csv``, 100 rows as published) read
through a lender's config alone: loans of 0 months, outcomes written CHGOFF / P I F or left
blank, flag codes no documentation mentions, dates written 2/28/1997."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lender_files import config_in_fresh_home

from finflow_core.errors import ConfigError
from finflow_core.lending.config import Config, load_yaml, parse_config
from finflow_core.lending.intake.outcomes import read_outcomes
from finflow_core.lending.intake.validation import validate_batch
from finflow_core.lending.strategy import LoanValues
from finflow_core.services.outcomes import as_laid_out

FIXTURES = Path(__file__).parents[1] / "fixtures"
CSV = FIXTURES / "sba_national_sample.csv"
CONFIG = FIXTURES / "sba_national.yaml"


@pytest.fixture(scope="module")
def lender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    yield from config_in_fresh_home(tmp_path_factory, CONFIG, "sba_home")


@pytest.fixture(scope="module")
def raw_file() -> pd.DataFrame:
    return pd.read_csv(CSV, dtype=str, keep_default_na=False)


def _with_term(**term: object) -> dict:
    doc = load_yaml(CONFIG.read_text())
    col = next(c for c in doc["dataset"]["columns"] if c["name"] == "Term")
    col.pop("min")
    col.update(term)
    return doc


@pytest.mark.parametrize("term", [{"min": 0}, {}, {"min": 0.5}])
def test_a_term_column_that_allows_zero_months_is_a_config_error(term: dict) -> None:
    # SBAnational.csv has loans of Term 0: with min 0 their profit was NaN, the batch's
    # profit sum was NaN and the training summary said "out-of-fold profit not priced"
    with pytest.raises(ConfigError) as err:
        parse_config(_with_term(**term))
    message = str(err.value)
    assert "(Term).min" in message and "min: 1 or more" in message and "in_range" in message


def test_zero_month_loans_are_quarantined_and_every_kept_loan_is_priced(
        lender: Config, raw_file: pd.DataFrame) -> None:
    report = validate_batch(CSV, lender, require_target=True)
    assert report.rows_in == len(raw_file) == report.rows_valid + report.rows_quarantined
    issues = report.issues
    zero = issues[(issues["column"] == "Term") & (issues["rule"] == "in_range")]
    assert sorted(zero["application_id"]) == sorted(raw_file.loc[raw_file["Term"] == "0",
                                                                 "LoanNr_ChkDgt"])
    assert len(zero) == 3 and set(zero["value"]) == {"0"}
    values = LoanValues.from_frame(report.valid, lender)
    assert np.isfinite(values.margin).all()


def test_a_flag_is_worded_code_by_code(lender: Config) -> None:
    new_exist, rev_line = lender.column("NewExist"), lender.column("RevLineCr")
    assert new_exist.category_reason("2") == "The business is new"
    assert new_exist.category_reason("1") is None  # an existing business is not told it is new
    assert rev_line.category_reason("N") == "The business has no revolving line of credit"
    assert lender.column("UrbanRural").category_reason("1") == "The location carries more risk"


@pytest.mark.parametrize(("column", "wording", "message"), [
    ("NewExist", {"3": "The business is new"},
     "(NewExist).reason_category[0]: '3' is not one of the declared categories (1, 2)"),
    ("NoEmp", "The business is small",
     "(NoEmp).reason_category: reason_category applies to category columns only (this one is "
     "integer): use reason_high or reason_low"),
    ("NewExist", ["The business is new"], "(NewExist).reason_category: must be one statement"),
])
def test_a_wording_for_codes_the_column_does_not_have_is_a_config_error(
        column: str, wording: object, message: str) -> None:
    doc = load_yaml(CONFIG.read_text())
    next(c for c in doc["dataset"]["columns"] if c["name"] == column)["reason_category"] = wording
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert message in str(err.value)


def test_the_servicing_export_is_read_with_the_registers_own_names_and_words(
        lender: Config, raw_file: pd.DataFrame) -> None:
    export = raw_file[["LoanNr_ChkDgt", "MIS_Status"]].assign(as_of="2014-06-30")
    f = read_outcomes(export.to_csv(index=False).encode(), lender.outcomes, today=date(2026, 12, 1))
    assert f.rows_in == len(raw_file)
    known = raw_file["MIS_Status"] != ""
    assert f.rows.loc[known.to_numpy(), "defaulted"].tolist() == (
        raw_file.loc[known, "MIS_Status"] == "CHGOFF").tolist()
    issues = f.issues
    assert issues["rule"].tolist() == ["outcome"] * 3 and issues["column"].eq("MIS_Status").all()
    assert sorted(issues["application_id"]) == sorted(raw_file.loc[~known, "LoanNr_ChkDgt"])
    assert issues["message"].iat[0] == (
        "MIS_Status: must say whether the loan defaulted, got (blank) (defaulted: CHGOFF; not "
        "defaulted: P I F; a file with other words declares them under outcomes: "
        "defaulted_words / repaid_words in the config)")


def test_simulated_outcomes_are_written_as_the_lenders_files_are(lender: Config) -> None:
    ours = pd.DataFrame({"application_id": ["A1", "A2"], "batch_id": ["B-1", "B-1"],
                         "defaulted": ["yes", "no"], "observed_on": ["2026-11-30"] * 2,
                         "amount_lost": [1200.0, None], "days_past_due": [90, 0]})
    theirs = as_laid_out(ours, lender.outcomes)
    assert list(theirs.columns) == ["LoanNr_ChkDgt", "batch_id", "MIS_Status", "as_of",
                                    "amount_lost", "days_past_due"]
    assert theirs["MIS_Status"].tolist() == ["CHGOFF", "P I F"]
    f = read_outcomes(theirs.to_csv(index=False).encode(), lender.outcomes, today=date(2026, 12, 1))
    assert f.ok and f.rows["defaulted"].tolist() == [True, False]


@pytest.mark.parametrize(("outcomes", "message"), [
    ({"id_column": "LoanNr_ChkDgt", "observed_column": "LoanNr_ChkDgt"},
     "outcomes.observed_column: 'LoanNr_ChkDgt' is already the id_column"),
    ({"defaulted_words": ["CHGOFF"], "repaid_words": ["P I F", "chgoff"]},
     "outcomes.repaid_words: 'chgoff' is both a default and a repayment"),
    ({"defaulted_words": []}, "outcomes.defaulted_words: needs at least one word"),
    ({"id_colum": "LoanNr_ChkDgt"}, "outcomes.id_colum"),
])
def test_an_outcome_layout_that_cannot_be_read_is_a_config_error(outcomes: dict,
                                                                 message: str) -> None:
    doc = load_yaml(CONFIG.read_text())
    doc["outcomes"] = outcomes
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert message in str(err.value)


def test_the_servicing_export_dates_outcomes_as_the_register_writes_them(
        lender: Config, raw_file: pd.DataFrame) -> None:
    """The register writes a charge-off as 30-Jan-10 (ChgOffDate): declared once under
    outcomes.date_format, the export loads as written; a date in another form is an issue
    naming the declared form."""
    spec = dataclasses.replace(lender.outcomes, date_format="%d-%b-%y")
    known = raw_file[raw_file["MIS_Status"] != ""]
    charged = (known["MIS_Status"] == "CHGOFF") & (known["ChgOffDate"] != "")
    export = known[["LoanNr_ChkDgt", "MIS_Status"]].assign(
        as_of=known["ChgOffDate"].where(charged, "30-Jun-14"))
    f = read_outcomes(export.to_csv(index=False).encode(), spec, today=date(2026, 12, 1))
    assert f.ok and f.rows_in == len(known)
    first = known[charged].iloc[0]
    got = f.rows.loc[f.rows["application_id"] == first["LoanNr_ChkDgt"], "observed_on"].iat[0]
    assert got == datetime.strptime(first["ChgOffDate"], "%d-%b-%y").date()
    iso = export.assign(as_of="2014-06-30").head(2)
    f = read_outcomes(iso.to_csv(index=False).encode(), spec, today=date(2026, 12, 1))
    assert f.issues["rule"].tolist() == ["date", "date"]
    assert f.issues["message"].iat[0] == (
        "as_of: must be a date written as outcomes.date_format says (%d-%b-%y), got '2014-06-30'")


def test_an_outcome_date_format_that_cannot_read_back_is_a_config_error() -> None:
    doc = load_yaml(CONFIG.read_text())
    doc["outcomes"]["date_format"] = "%d-%b"
    with pytest.raises(ConfigError, match=r"outcomes\.date_format: date_format '%d-%b' must have"):
        parse_config(doc)
