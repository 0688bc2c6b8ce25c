"""Numbers and dates as a lender's file writes them: digit grouping, currency signs and units,
percentages and date formats are declared per column, read exactly, and the cells are kept
as written. A cell that does not follow the declared form is quarantined, never guessed."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finflow_core.errors import ConfigError
from finflow_core.lending.config import ColumnSpec, Config, CsvForm, parse_config
from finflow_core.lending.intake.file_text import close_names
from finflow_core.lending.intake.schema import read_column
from finflow_core.lending.intake.validation import validate_batch, validate_chunks
from finflow_core.lending.synthetic import generate_applications
from finflow_core.services.applications import record_csv


def _raw_with(small_raw: dict[str, Any], **by_column: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(small_raw)
    for col in raw["dataset"]["columns"]:
        col.update(by_column.get(col["name"], {}))
    return raw


@pytest.fixture()
def formatted(small_raw: dict[str, Any]) -> Config:
    """The small config with its money written US-style, its rate as a percentage and its
    application date as 02-Oct-22."""
    return parse_config(_raw_with(
        small_raw,
        loan_amount={"thousands": ",", "strip": ["$", "USD"]},
        annual_revenue={"thousands": ","},
        interest_rate={"percent": True},
        application_date={"date_format": "%d-%b-%y"},
    ), source="formatted")


def _written(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype(object)
    out["loan_amount"] = [f"${v:,.2f} " for v in frame["loan_amount"]]
    out["annual_revenue"] = [f"{v:,.0f}" for v in frame["annual_revenue"]]
    out["interest_rate"] = [f"{v * 100:.2f}%" for v in frame["interest_rate"]]
    out["application_date"] = [pd.Timestamp(v).strftime("%d-%b-%y") for v in frame["application_date"]]
    return out


def test_a_file_written_as_declared_reads_as_the_plain_one(
    small_raw: dict[str, Any], formatted: Config, config: Config, to_csv: Callable
) -> None:
    plain = generate_applications(40, seed=83).drop(columns="default")
    plain["annual_revenue"] = plain["annual_revenue"].round()
    ours = validate_batch(to_csv(_written(plain)), formatted)
    theirs = validate_batch(to_csv(plain), config)
    assert ours.rows_valid == theirs.rows_valid == 40
    for col in ("loan_amount", "annual_revenue", "interest_rate"):
        np.testing.assert_allclose(ours.valid[col].to_numpy(float), theirs.valid[col].to_numpy(float),
                                   rtol=1e-9, err_msg=col)
    assert (ours.valid["application_date"] == theirs.valid["application_date"]).all()
    # the cells as submitted are kept as written
    raw = next(iter(validate_chunks(ours.batch, formatted, chunk_rows=100))).valid_raw
    assert raw["loan_amount"].iloc[0] == _written(plain)["loan_amount"].iloc[0]
    assert raw["interest_rate"].iloc[0].endswith("%")


@pytest.mark.parametrize(("cell", "value"), [
    ("$60,000.00 ", 60000.0), ("-$1,250", -1250.0), ("$-5", -5.0), ("USD 1,000", 1000.0),
    ("1,000 USD", 1000.0), ("12,345,678.9", 12345678.9), ("60000", 60000.0), ("1.5e3", 1500.0),
])
def test_declared_marks_are_read(cell: str, value: float) -> None:
    c = ColumnSpec(name="amount", type="float", thousands=",", strip=("$", "USD"))
    read = read_column(pd.Series([cell], dtype="str"), c)
    assert not read.unreadable[0] and read.values.iloc[0] == pytest.approx(value)


@pytest.mark.parametrize("cell", ["1,25", "1,0000", ",100", "$$5", "$", "5 EUR", "1.250,50", "12%"])
def test_cells_not_in_the_declared_form_are_unreadable(cell: str) -> None:
    c = ColumnSpec(name="amount", type="float", thousands=",", strip=("$", "USD"))
    read = read_column(pd.Series([cell], dtype="str"), c)
    assert read.unreadable[0] and np.isnan(read.values.iloc[0])


def test_without_a_declared_form_marks_stay_unreadable() -> None:
    c = ColumnSpec(name="amount", type="float")
    read = read_column(pd.Series(["$5", "1,000", "5%", "5"], dtype="str"), c)
    assert read.unreadable.tolist() == [True, True, True, False]


def test_a_percentage_reads_as_a_fraction_with_or_without_its_sign() -> None:
    c = ColumnSpec(name="rate", type="float", percent=True, min=0, max=1)
    read = read_column(pd.Series(["10.65%", "10.65", " 7 %", "x%", "%"], dtype="str"), c)
    assert read.values.iloc[:3].tolist() == pytest.approx([0.1065, 0.1065, 0.07])
    assert read.unreadable.tolist() == [False, False, False, True, True]


def test_bad_cells_are_quarantined_with_their_rule_and_value(formatted: Config, to_csv: Callable) -> None:
    frame = _written(generate_applications(6, seed=84).drop(columns="default"))
    frame.loc[1, "loan_amount"] = "$1,25"
    frame.loc[2, "application_date"] = "30-Feb-22"
    frame.loc[3, "application_date"] = "2022-10-02"  # ISO, but the column says 02-Oct-22
    frame.loc[4, "annual_revenue"] = "1.250.000"
    report = validate_batch(to_csv(frame), formatted)
    issues = report.issues.set_index("row_number")
    assert report.rows_valid == 2
    assert issues.loc[2, ["column", "rule", "value"]].tolist() == ["loan_amount", "number", "$1,25"]
    assert issues.loc[3, ["column", "rule"]].tolist() == ["application_date", "date"]
    assert issues.loc[4, ["column", "rule", "value"]].tolist() == ["application_date", "date", "2022-10-02"]
    assert "date_format" in issues.loc[4, "message"]
    assert issues.loc[5, ["column", "rule"]].tolist() == ["annual_revenue", "number"]


def test_an_integer_with_grouping_keeps_its_integer_rule() -> None:
    from finflow_core.lending.intake.schema import reading_rule

    c = ColumnSpec(name="employees", type="integer", thousands=",")
    cells = pd.Series(["1,000", "1,000.5", "1,00"], dtype="str")
    read = read_column(cells, c)
    assert read.values.iloc[0] == 1000.0
    assert reading_rule(c, cells, read.unreadable).tolist() == ["integer", "number"]


@pytest.mark.parametrize(("keys", "words"), [
    ({"thousands": "."}, "decimal mark"),
    ({"strip": ["%"]}, "percent: true"),
    ({"strip": ["1"]}, "no digits"),
    ({"percent": True, "type": "integer"}, "float columns"),
])
def test_a_form_the_reader_cannot_apply_is_a_config_error(
    small_raw: dict[str, Any], keys: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_raw_with(small_raw, annual_revenue=keys), source="bad")
    assert words in str(err.value) and "annual_revenue" in str(err.value)


@pytest.mark.parametrize(("fmt", "words"), [("%Y", "must have a month"), ("%d/%m/%Y %Q", "read back")])
def test_a_date_format_must_read_back_what_it_writes(small_raw: dict[str, Any], fmt: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_raw_with(small_raw, application_date={"date_format": fmt}), source="bad")
    assert words in str(err.value)


def test_number_marks_only_on_numbers(small_raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="number columns"):
        parse_config(_raw_with(small_raw, industry={"thousands": ","}), source="bad")
    with pytest.raises(ConfigError, match="date columns"):
        parse_config(_raw_with(small_raw, loan_amount={"date_format": "%d-%b-%y"}), source="bad")


def test_a_typed_in_application_is_written_as_the_file_writes_it(formatted: Config) -> None:
    """The form gives a date and a rate as a fraction; they reach the gate in the column's form."""
    record = generate_applications(1, seed=85).drop(columns="default").iloc[0].to_dict()
    record["application_date"] = dt.date(2026, 3, 4)
    record["interest_rate"] = 0.115
    data = record_csv(record, formatted.input_columns)
    line = data.decode().splitlines()[1]
    assert "04-Mar-26" in line and ",11.5," in line
    report = validate_batch(data, formatted)
    assert report.rows_valid == 1
    assert report.valid["interest_rate"].iloc[0] == pytest.approx(0.115)
    assert report.valid["application_date"].iloc[0] == pd.Timestamp("2026-03-04")


def test_declared_codes_of_a_number_column_read_as_their_numbers() -> None:
    c = ColumnSpec(name="MIS_Status", type="integer", role="target", min=0, max=1,
                   codes={"CHGOFF": 1, "P I F": 0})
    read = read_column(pd.Series(["CHGOFF", "P I F", " P I F ", "1", "PIF", "chgoff"], dtype="str"), c)
    assert read.values.iloc[:4].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert read.unreadable.tolist() == [False, False, False, False, True, True]


@pytest.mark.parametrize(("codes", "words"), [
    ({"half": 0.5}, "not a whole number"), ({" ": 1}, "blank"), ([1, 2], "mapping of codes"),
    ({"NA": 0}, "also a missing value"),
])
def test_codes_a_reader_cannot_apply_are_config_errors(
    small_raw: dict[str, Any], codes: Any, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_raw_with(small_raw, employees={"codes": codes, "missing_values": ["NA"]}), source="bad")
    assert words in str(err.value) and "employees" in str(err.value)


def test_a_month_without_a_day_reads_as_its_first_day() -> None:
    c = ColumnSpec(name="issue_d", type="date", date_format="%b-%Y")
    read = read_column(pd.Series(["Dec-2015", "Feb-2016", "2016-02"], dtype="str"), c)
    assert read.values.iloc[:2].tolist() == [pd.Timestamp("2015-12-01"), pd.Timestamp("2016-02-01")]
    assert read.unreadable.tolist() == [False, False, True]


def test_a_header_that_differs_only_in_case_or_spacing_is_named(config: Config, to_csv: Callable) -> None:
    from finflow_core.errors import BatchRejected

    frame = generate_applications(3, seed=86).drop(columns="default")
    frame = frame.rename(columns={"loan_amount": "Loan Amount", "credit_score": "CREDIT_SCORE"})
    with pytest.raises(BatchRejected) as err:
        validate_batch(to_csv(frame), config)
    message = str(err.value)
    assert "'Loan Amount' for 'loan_amount'" in message and "'CREDIT_SCORE' for 'credit_score'" in message
    assert set(err.value.details["missing"]) == {"loan_amount", "credit_score"}


def test_a_file_refused_under_the_shipped_demo_config_says_so(config: Config, small_raw: dict[str, Any],
                                                              to_csv: Callable) -> None:
    """A lender who forgot FINFLOW_CONFIG reads the demo's columns: the refusal says whose."""
    from finflow_core.errors import BatchRejected
    from finflow_core.lending.config import default_config_path

    frame = generate_applications(3, seed=92).drop(columns=["default", "credit_score"])
    demo = parse_config(copy.deepcopy(small_raw), source=str(default_config_path()))
    with pytest.raises(BatchRejected) as err:
        validate_batch(to_csv(frame), demo)
    assert "shipped demo config" in str(err.value) and "--config or FINFLOW_CONFIG" in str(err.value)
    # said to whoever reads it in the app too: who sets the config up, not an option to pass
    assert "which whoever runs FinFlow sets up (--config or FINFLOW_CONFIG)." in str(err.value)
    with pytest.raises(BatchRejected) as err:  # the lender's own config: no such sentence
        validate_batch(to_csv(frame), config)
    assert "missing required column(s) credit_score" in str(err.value)
    assert "demo" not in str(err.value)


def test_a_header_name_spelt_nearly_the_same_is_offered_as_a_guess(config: Config,
                                                                   to_csv: Callable) -> None:
    """Lending Club writes ``annual_inc`` and ``loan_amnt``: the refusal names the likely
    column; a name the config uses for another column, or one far off, is never offered."""
    from finflow_core.errors import BatchRejected

    frame = generate_applications(3, seed=88).drop(columns="default")
    frame = frame.rename(columns={"loan_amount": "loan_amnt", "employees": "employee",
                                  "existing_debt": "outstanding"})
    with pytest.raises(BatchRejected) as err:
        validate_batch(to_csv(frame), config)
    message = str(err.value)
    assert "Did you mean 'loan_amnt' for 'loan_amount', 'employee' for 'employees'?" in message
    assert "'outstanding'" not in message  # nothing alike: no guess
    # a header name the config reads for another column is never offered
    assert close_names(["loan_amount"], ["loan_amounts", "loan_amnt"]) == {"loan_amount": "loan_amounts"}
    assert close_names(["loan_amount"], ["loan_amounts", "loan_amnt"], taken={"loan_amounts"}) == {
        "loan_amount": "loan_amnt"}


@pytest.mark.parametrize("cell", [" =1+1", "\u00a0@SUM(A1)", "\u200b-2+3"])
def test_the_gate_quarantines_a_formula_behind_spaces(config: Config, to_csv: Callable, cell: str) -> None:
    frame = generate_applications(3, seed=87).drop(columns="default")
    frame["application_id"] = frame["application_id"].astype(object)
    frame.loc[1, "application_id"] = cell
    report = validate_batch(to_csv(frame), config)
    assert report.issues[["row_number", "rule"]].values.tolist() == [[2, "formula"]]


@pytest.mark.parametrize("cell", ["A\t7", "A7\x1b[2J", "A\x857", "\u202eA7", "A\u20687"])
def test_an_id_with_control_or_direction_characters_is_quarantined(
    config: Config, to_csv: Callable, cell: str
) -> None:
    """Such an id reads differently from how it is stored, so no one could find the case again;
    an ordinary non-ASCII id is kept."""
    frame = generate_applications(3, seed=86).drop(columns="default")
    frame["application_id"] = frame["application_id"].astype(object)
    frame.loc[1, "application_id"] = cell
    frame.loc[2, "application_id"] = "Zürich-Ø-7"
    report = validate_batch(to_csv(frame), config)
    assert report.issues[["row_number", "rule"]].values.tolist() == [[2, "id_characters"]]
    assert repr(cell) in report.issues.iloc[0]["message"]
    assert report.valid["application_id"].tolist()[-1] == "Zürich-Ø-7"


@pytest.mark.parametrize(("column", "cell", "says"), [
    ("interest_rate", "13.56%", "declare percent: true"),
    ("term_months", "36 months", "declare strip: ['months']"),
    ("loan_amount", "$261,700", "declare strip: ['$']; it is also written with digit groups: "
                                "declare thousands: ','"),
    ("annual_revenue", "1.250.000,50", 'declare thousands: "." and decimal: ","'),
    ("debt_to_income", "0,35", 'declare decimal: ","'),
])
def test_a_number_in_an_undeclared_form_is_quarantined_with_the_key_that_reads_it(
    config: Config, to_csv: Callable, column: str, cell: str, says: str
) -> None:
    """The gate never guesses the form (the row is quarantined) but says how to declare it."""
    frame = generate_applications(3, seed=89).drop(columns="default")
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = cell
    report = validate_batch(to_csv(frame), config)
    issue = report.issues.iloc[0]
    assert (len(report.issues), issue["row_number"], issue["column"]) == (1, 2, column)
    assert says in issue["message"] and repr(cell) in issue["message"]


def test_a_plainly_wrong_number_gets_no_form_hint(config: Config, to_csv: Callable) -> None:
    frame = generate_applications(3, seed=90).drop(columns="default")
    frame["credit_score"] = frame["credit_score"].astype(object)
    frame.loc[0, "credit_score"] = "unknown"
    message = validate_batch(to_csv(frame), config).issues.iloc[0]["message"]
    assert message == "credit_score: must be a number, got 'unknown'"


def test_an_outcome_written_as_text_is_told_to_declare_codes(config: Config, to_csv: Callable) -> None:
    frame = generate_applications(3, seed=91)
    frame["default"] = frame["default"].astype(object)
    frame.loc[2, "default"] = "Charged Off"
    report = validate_batch(to_csv(frame), config, require_target=True)
    assert "codes: {'Charged Off': 0 or 1, ...}" in report.issues.iloc[0]["message"]


# -- encodings ------------------------------------------------------------------------------

def _cp1252_config(small_raw: dict[str, Any]) -> Config:
    raw = copy.deepcopy(small_raw)
    raw["dataset"]["encoding"] = "windows-1252"
    return parse_config(raw, source="cp1252")


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_a_file_in_the_declared_encoding_reads_as_its_text(
    small_raw: dict[str, Any], to_csv: Callable, quoted: bool
) -> None:
    import hashlib

    conf = _cp1252_config(small_raw)
    assert conf.encoding == "cp1252"
    frame = generate_applications(5, seed=88).drop(columns="default")
    frame["application_id"] = frame["application_id"].astype(object)
    frame.loc[2, "application_id"] = "Café-’2" + (' "x", y' if quoted else "")
    data = to_csv(frame).decode("utf-8").encode("cp1252")
    report = validate_batch(data, conf)
    assert report.rows_valid == 5
    assert report.valid["application_id"].iloc[2] == frame.loc[2, "application_id"]
    assert report.batch.sha256 == hashlib.sha256(data).hexdigest()  # the file as uploaded
    raw = next(iter(validate_chunks(report.batch, conf))).valid_raw
    assert raw["application_id"].iloc[2] == frame.loc[2, "application_id"]


def test_a_wrong_encoding_is_refused_with_what_to_do(
    small_raw: dict[str, Any], config: Config, to_csv: Callable
) -> None:
    from finflow_core.errors import BatchRejected

    frame = generate_applications(3, seed=89).drop(columns="default")
    frame["application_id"] = frame["application_id"].astype(object)
    frame.loc[1, "application_id"] = "Café"
    data = to_csv(frame).decode("utf-8").encode("cp1252")
    with pytest.raises(BatchRejected, match="not UTF-8 text.*dataset.encoding: cp1252"):
        validate_batch(data, config)
    undefined = data.replace("Café".encode("cp1252"), b"Caf\x81")  # no character in cp1252
    with pytest.raises(BatchRejected, match=r"not cp1252 text \(byte 0x81") as err:
        validate_batch(undefined, _cp1252_config(small_raw))
    assert err.value.details["encoding"] == "cp1252"


@pytest.mark.parametrize(("name", "words"), [("klingon", "unknown encoding"), ("utf-16", "UTF-16/32")])
def test_an_encoding_csv_files_cannot_use_is_a_config_error(
    small_raw: dict[str, Any], name: str, words: str
) -> None:
    raw = copy.deepcopy(small_raw)
    raw["dataset"]["encoding"] = name
    with pytest.raises(ConfigError, match=words):
        parse_config(raw, source="bad")


def test_a_form_finflow_writes_is_utf8_whatever_the_files_are(small_raw: dict[str, Any]) -> None:
    from finflow_core.lending.config import FINFLOW_CSV

    conf = _cp1252_config(small_raw)
    record = generate_applications(1, seed=90).drop(columns="default").iloc[0].to_dict()
    record["application_id"] = "Café-1"
    data = record_csv(record, conf.input_columns)
    assert validate_batch(data, conf, form=FINFLOW_CSV).valid["application_id"].iloc[0] == "Café-1"
    assert validate_batch(data, conf).valid["application_id"].iloc[0] == "CafÃ©-1"  # why it is passed


def test_a_dask_run_refuses_a_file_that_is_not_utf8(small_raw: dict[str, Any], to_csv: Callable) -> None:
    from finflow_core.errors import BatchRejected
    from finflow_core.lending.intake.reader import open_batch
    from finflow_core.pipeline.dask_engine import DaskEngine

    conf = _cp1252_config(small_raw)
    batch = open_batch(to_csv(generate_applications(3, seed=91).drop(columns="default")), conf)
    with pytest.raises(BatchRejected, match="Dask run reads UTF-8, comma-separated files only"):
        next(iter(DaskEngine().parts(batch, None)))  # type: ignore[arg-type]


def test_an_outcome_file_is_read_in_the_lenders_encoding_and_delimiter() -> None:
    from finflow_core.lending.intake.outcomes import read_outcomes

    text = "application_id,observed_on,defaulted\nCafé-1,2026-11-02,1\nAPP-2,2026-11-02,0\n"
    form = CsvForm("cp1252", ";")
    read = read_outcomes(text.replace(",", ";").encode("cp1252"), today=dt.date(2026, 12, 1), form=form)
    assert read.rows["application_id"].tolist()[:1] == ["Café-1"] and read.issues.empty


# -- a European export: semicolons, decimal commas, cp1252 ----------------------------------

@pytest.fixture()
def european(small_raw: dict[str, Any]) -> Config:
    raw = _raw_with(
        small_raw,
        loan_amount={"decimal": ",", "thousands": ".", "strip": ["€", "EUR"]},
        annual_revenue={"decimal": ",", "thousands": "."},
        interest_rate={"decimal": ",", "percent": True},
        debt_to_income={"decimal": ","},
        application_date={"date_format": "%d.%m.%Y"},
    )
    raw["dataset"]["encoding"] = "cp1252"
    raw["dataset"]["delimiter"] = ";"
    return parse_config(raw, source="european")


def _european(frame: pd.DataFrame) -> pd.DataFrame:
    def de(v: float, places: int) -> str:
        return f"{v:,.{places}f}".replace(",", "_").replace(".", ",").replace("_", ".")
    out = frame.astype(object)
    out["loan_amount"] = [f"{de(v, 2)} €" for v in frame["loan_amount"]]
    out["annual_revenue"] = [de(v, 0) for v in frame["annual_revenue"]]
    out["interest_rate"] = [f"{v * 100:.2f} %".replace(".", ",") for v in frame["interest_rate"]]
    out["debt_to_income"] = [str(v).replace(".", ",") for v in frame["debt_to_income"]]
    out["application_date"] = [pd.Timestamp(v).strftime("%d.%m.%Y") for v in frame["application_date"]]
    return out


@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_a_european_export_reads_as_the_plain_file(
    european: Config, config: Config, to_csv: Callable, quoted: bool
) -> None:
    plain = generate_applications(30, seed=92).drop(columns="default")
    plain["annual_revenue"] = plain["annual_revenue"].round()
    written = _european(plain)
    if quoted:
        written["application_id"] = written["application_id"].astype(object)
        written.loc[4, "application_id"] = "Müller; Söhne"  # a delimiter inside quotes
        plain.loc[4, "application_id"] = "Müller; Söhne"
    data = written.to_csv(index=False, sep=";").encode("cp1252")
    ours = validate_batch(data, european)
    theirs = validate_batch(to_csv(plain), config)
    assert ours.rows_valid == theirs.rows_valid == 30
    for col in ("loan_amount", "annual_revenue", "interest_rate", "debt_to_income"):
        np.testing.assert_allclose(ours.valid[col].to_numpy(float), theirs.valid[col].to_numpy(float),
                                   rtol=1e-9, err_msg=col)
    assert (ours.valid["application_date"] == theirs.valid["application_date"]).all()
    assert ours.valid["application_id"].tolist() == theirs.valid["application_id"].tolist()


@pytest.mark.parametrize(("cell", "readable"), [("1.250,50", True), ("1250,5", True), ("1.5", False),
                                                 ("1.25", False), ("1,2,3", False)])
def test_with_a_decimal_comma_a_point_only_groups_thousands(cell: str, readable: bool) -> None:
    c = ColumnSpec(name="amount", type="float", decimal=",", thousands=".")
    assert bool(read_column(pd.Series([cell], dtype="str"), c).unreadable[0]) is not readable


def test_a_typed_in_application_gets_decimal_commas(european: Config) -> None:
    record = generate_applications(1, seed=93).drop(columns="default").iloc[0].to_dict()
    from finflow_core.lending.config import FINFLOW_CSV

    record["interest_rate"], record["loan_amount"] = 0.115, 25000.5
    record["application_date"] = dt.date(2026, 3, 4)
    data = record_csv(record, european.input_columns).decode()
    assert '"11,5"' in data and '"25000,5"' in data and "04.03.2026" in data  # FinFlow's CSV: commas
    report = validate_batch(data.encode(), european, form=FINFLOW_CSV)
    assert report.valid["interest_rate"].iloc[0] == pytest.approx(0.115)
    assert report.valid["loan_amount"].iloc[0] == pytest.approx(25000.5)


def test_a_file_with_the_other_delimiter_is_refused_with_what_to_declare(
    config: Config, european: Config, to_csv: Callable
) -> None:
    from finflow_core.errors import BatchRejected

    frame = generate_applications(3, seed=94).drop(columns="default")
    with pytest.raises(BatchRejected, match=r"separated by ';', not ','.*dataset.delimiter: ';'"):
        validate_batch(frame.to_csv(index=False, sep=";").encode(), config)
    with pytest.raises(BatchRejected, match=r"separated by ',', not ';'.*dataset.delimiter: ','"):
        validate_batch(to_csv(frame), european)
