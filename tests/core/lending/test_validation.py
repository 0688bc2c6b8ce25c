"""The quality gate: every row valid or quarantined, with the exact rule that broke."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import Config
from finflow_core.lending.intake.reader import open_batch
from finflow_core.lending.intake.schema import RULES
from finflow_core.lending.intake.sources import iter_chunks
from finflow_core.lending.intake.validation import (
    BatchValidator,
    ValidationReport,
    validate_batch,
    validate_chunks,
)
from finflow_core.lending.synthetic import generate_applications

ROWS = 240

# (0-based row, column, new cell text, expected rules of that row)
CELL_CORRUPTIONS: list[tuple[int, str, str, set[str]]] = [
    (3, "credit_score", "abc", {"number"}),
    (7, "credit_score", "720.5", {"integer"}),
    (9, "term_months", "12.5", {"integer"}),
    (12, "recent_delinquencies", "1.5", {"integer"}),
    (15, "employees", "3.2", {"integer"}),
    (18, "credit_score", "900", {"in_range"}),
    (21, "loan_amount", "500", {"in_range"}),
    (24, "interest_rate", "-0.01", {"in_range"}),
    (27, "employees", "-1", {"in_range"}),
    (30, "years_in_business", "", {"not_null"}),
    (33, "annual_revenue", "   ", {"not_null"}),
    (36, "application_date", "", {"not_null"}),
    (39, "collateral", "", {"not_null"}),
    (42, "application_id", "", {"not_null"}),
    (45, "application_date", "2026-02-30", {"date"}),
    (48, "application_date", "05/01/2026", {"date"}),
    (51, "application_date", "2026-1-5", {"date"}),
    (105, "application_date", "0000-01-01", {"date"}),  # pandas reads year 0; nothing else does
    (108, "region", "west\u202e", {"control", "category"}),  # the text after it reversed
    (114, "collateral", "full\x1b[2J", {"control", "category"}),  # a terminal escape
    (117, "industry", "retail\x07", {"control", "category"}),
    (54, "industry", "mining", {"category"}),
    (57, "region", "West", {"category"}),
    (60, "collateral", "full ", {"category"}),
    (63, "application_id", '=HYPERLINK("http://x","click")', {"formula"}),
    (66, "application_id", "+4915551234", {"formula"}),
    (69, "application_id", "-APP-1", {"formula"}),
    (72, "application_id", "@SUM(A1:A9)", {"formula"}),
    (75, "application_id", "\tAPP-TAB", {"formula", "id_characters"}),
    (CR_ROW := 78, "application_id", "\rAPP-CR", {"formula", "id_characters"}),
    (81, "industry", "=cmd|' /C calc'!A0", {"formula", "category"}),
    (84, "application_id", "X" * 65, {"max_length"}),
    (87, "debt_to_income", "1,5", {"number"}),
    (90, "debt_to_income", "inf", {"number"}),
    (93, "existing_debt", "NaN", {"number"}),
    (96, "loan_amount", "12k", {"number"}),
    (99, "term_months", "thirty", {"number"}),
    # several problems in one row: one issue per broken rule
    (102, "credit_score", "200", {"in_range", "number", "category"}),
]
EXTRA_CELLS = {102: [("debt_to_income", "n/a"), ("region", "atlantis")]}
# later occurrences of an id already used (the first occurrence stays valid)
DUPLICATES = [(110, 5), (120, 5), (130, 111), (200, 150)]
# rows with a wrong number of cells
TOO_MANY, TOO_FEW = 140, 160


@pytest.fixture(scope="module")
def original() -> pd.DataFrame:
    return generate_applications(ROWS, seed=40).drop(columns="default")


@pytest.fixture(scope="module")
def corrupted(original: pd.DataFrame) -> tuple[bytes, dict[int, set[str]]]:
    """The batch with every corruption applied, and the expected rules by row number."""
    df = original.astype(object).copy()
    df["employees"] = [("" if pd.isna(v) else str(v)) for v in original["employees"]]
    expected: dict[int, set[str]] = {}
    for row, col, text, rules in CELL_CORRUPTIONS:
        df.loc[row, col] = text
        for c, t in EXTRA_CELLS.get(row, []):
            df.loc[row, c] = t
        expected[row + 1] = rules
    for row, first in DUPLICATES:
        df.loc[row, "application_id"] = df.loc[first, "application_id"]
        expected[row + 1] = {"duplicate_id"}
    # CRLF line ends, so a cell holding a bare CR is quoted as a spreadsheet would write it
    lines = df.to_csv(index=False, lineterminator="\r\n").split("\r\n")
    lines[TOO_MANY + 1] += ",surplus"
    lines[TOO_FEW + 1] = lines[TOO_FEW + 1].rsplit(",", 1)[0]
    expected[TOO_MANY + 1] = {"field_count"}
    expected[TOO_FEW + 1] = {"field_count"}
    return "\r\n".join(lines).encode(), expected


@pytest.fixture(scope="module")
def strict(config: Config) -> Config:
    """The session config with every category column quarantining undeclared codes."""
    columns = tuple(
        dataclasses.replace(c, on_unknown="quarantine") if c.type == "category" else c
        for c in config.columns
    )
    return dataclasses.replace(config, columns=columns)


@pytest.fixture(scope="module")
def report(corrupted: tuple[bytes, dict[int, set[str]]], strict: Config) -> ValidationReport:
    return validate_batch(corrupted[0], strict)


def test_every_row_is_accounted_for(report: ValidationReport,
                                    corrupted: tuple[bytes, dict[int, set[str]]]) -> None:
    assert report.rows_in == ROWS
    assert report.rows_valid + report.rows_quarantined == ROWS
    assert report.rows_quarantined == len(corrupted[1])
    assert sorted(report.row_numbers.tolist() + report.quarantined["row_number"].tolist()) == list(
        range(1, ROWS + 1)
    )


def test_quarantine_is_exactly_the_corrupted_rows(
    report: ValidationReport, corrupted: tuple[bytes, dict[int, set[str]]]
) -> None:
    expected = corrupted[1]
    assert set(report.quarantined["row_number"]) == set(expected)
    assert set(report.issues["row_number"]) == set(expected)
    got = report.issues.groupby("row_number")["rule"].agg(set).to_dict()
    assert got == expected
    assert set(report.issues["rule"]) <= set(RULES)


def test_issues_name_column_and_offending_value(report: ValidationReport,
                                                original: pd.DataFrame) -> None:
    issues = report.issues.set_index(["row_number", "rule"])
    for row, col, text, rules in CELL_CORRUPTIONS:
        if len(rules) != 1:
            continue
        (rule,) = rules
        issue = issues.loc[(row + 1, rule)]
        assert issue["column"] == col
        assert issue["value"] == text
        # header on line 1, no blank lines; the quoted CR of row 78 is a physical line break
        assert issue["line"] == row + 2 + (row > CR_ROW)
        assert RULES[rule] in issue["message"]
    multi = report.issues[report.issues["row_number"] == 103].set_index("column")
    assert multi.loc["credit_score", "rule"] == "in_range"
    assert multi.loc["debt_to_income", "value"] == "n/a"
    assert multi.loc["region", "value"] == "atlantis"
    rng = issues.loc[(19, "in_range")]
    assert rng["message"] == "credit_score: outside the allowed range [300 to 850], got '900'"
    cat = issues.loc[(55, "category")]
    assert "retail" in cat["message"] and "'mining'" in cat["message"]


def test_duplicate_ids_keep_the_first_occurrence(report: ValidationReport,
                                                 original: pd.DataFrame) -> None:
    dups = report.issues[report.issues["rule"] == "duplicate_id"].set_index("row_number")
    for row, first in DUPLICATES:
        issue = dups.loc[row + 1]
        assert issue["value"] == original.loc[first, "application_id"]
        assert issue["application_id"] == original.loc[first, "application_id"]
        assert f"on row {first + 1}" in issue["message"]
        assert first + 1 in report.row_numbers  # the first occurrence stays valid
    # 111 is both a first occurrence (for row 131) and valid itself
    assert report.valid["application_id"].is_unique


def test_field_count_issues(report: ValidationReport, original: pd.DataFrame) -> None:
    shape = report.issues[report.issues["rule"] == "field_count"].set_index("row_number")
    assert shape.loc[TOO_MANY + 1, "value"] == f"{len(original.columns) + 1} cells"
    assert shape.loc[TOO_FEW + 1, "value"] == f"{len(original.columns) - 1} cells"
    assert shape.loc[TOO_MANY + 1, "application_id"] == original.loc[TOO_MANY, "application_id"]
    q = report.quarantined.set_index("row_number")
    assert q.loc[TOO_MANY + 1, "(extra cells)"] == "surplus"
    assert q.loc[TOO_MANY + 1, "application_id"] == original.loc[TOO_MANY, "application_id"]


def test_quarantined_rows_keep_cells_as_written(report: ValidationReport) -> None:
    q = report.quarantined.set_index("row_number")
    for row, col, text, _ in CELL_CORRUPTIONS:
        assert q.loc[row + 1, col] == text
        assert q.loc[row + 1, "reasons"]
    assert list(report.quarantined.columns[:3]) == ["row_number", "line", "reasons"]


def test_valid_rows_equal_the_originals(report: ValidationReport, original: pd.DataFrame,
                                        config: Config) -> None:
    src = original.iloc[report.row_numbers - 1].reset_index(drop=True)
    valid = report.valid
    assert list(valid.columns) == [c.name for c in config.input_columns]
    for col in config.input_columns:
        got, want = valid[col.name], src[col.name]
        if col.type == "date":
            assert got.dt.strftime("%Y-%m-%d").tolist() == want.tolist()
        elif col.type == "category":
            assert got.astype(object).tolist() == want.tolist()
            assert list(got.cat.categories) == list(col.categories)
        elif col.type == "integer":
            assert str(got.dtype) == "Int64"
            pd.testing.assert_series_equal(got, want.astype("Int64"), check_names=False)
        elif col.type == "float":
            np.testing.assert_array_equal(got.to_numpy(), want.to_numpy(dtype=float))
        else:
            assert got.tolist() == want.tolist()
    assert valid["employees"].isna().sum() == src["employees"].isna().sum() > 0


def test_chunked_validation_gives_the_same_quarantine(
    report: ValidationReport, corrupted: tuple[bytes, dict[int, set[str]]], strict: Config
) -> None:
    batch = open_batch(corrupted[0], strict)
    parts = list(validate_chunks(batch, strict, chunk_rows=7))
    assert len(parts) > 30
    issues = pd.concat([p.issues for p in parts], ignore_index=True)
    quarantined = pd.concat([p.quarantined for p in parts], ignore_index=True)
    cols = ["row_number", "line", "application_id", "column", "rule", "value", "message"]
    pd.testing.assert_frame_equal(
        issues[cols].sort_values(["row_number", "column", "rule"]).reset_index(drop=True),
        report.issues[cols].sort_values(["row_number", "column", "rule"]).reset_index(drop=True),
        check_dtype=False,
    )
    assert quarantined["row_number"].tolist() == report.quarantined["row_number"].tolist()
    assert np.concatenate([p.row_numbers for p in parts]).tolist() == report.row_numbers.tolist()
    assert sum(p.rows_in for p in parts) == ROWS


def test_duplicates_across_chunks(config: Config, to_csv: Callable) -> None:
    df = generate_applications(30, seed=41).drop(columns="default")
    df.loc[25, "application_id"] = df.loc[2, "application_id"]
    df.loc[8, "application_id"] = df.loc[7, "application_id"]
    batch = open_batch(to_csv(df), config)
    parts = list(validate_chunks(batch, config, chunk_rows=7))
    issues = pd.concat([p.issues for p in parts])
    assert issues["row_number"].tolist() == [9, 26]
    assert set(issues["rule"]) == {"duplicate_id"}
    assert "on row 3" in issues["message"].iloc[1]


def test_rule_counts(report: ValidationReport) -> None:
    counts = report.rule_counts()
    assert counts["duplicate_id"] == len(DUPLICATES)
    assert counts["field_count"] == 2
    assert counts["formula"] == 7
    assert sum(counts.values()) == len(report.issues)


def test_field_count_names_the_id_wherever_it_stands(config: Config) -> None:
    df = generate_applications(5, seed=42).drop(columns="default")
    df = df[[*df.columns[1:], "application_id"]]  # id column last
    lines = df.to_csv(index=False).split("\n")
    lines[2] += ",surplus"
    report = validate_batch("\n".join(lines).encode(), config)
    (issue,) = report.issues.itertuples()
    assert issue.rule == "field_count"
    assert issue.application_id == df["application_id"].iloc[1]


def test_target_is_checked_for_training_data(config: Config, to_csv: Callable) -> None:
    df = generate_applications(10, seed=43).astype(object)
    df.loc[1, "default"] = "2"
    df.loc[3, "default"] = ""
    df.loc[5, "default"] = "yes"
    df.loc[7, "default"] = "0.5"
    report = validate_batch(to_csv(df), config, require_target=True)
    rules = report.issues.set_index("row_number")["rule"].to_dict()
    assert rules == {2: "in_range", 4: "not_null", 6: "number", 8: "integer"}
    assert str(report.valid["default"].dtype) == "Int64"
    assert "default" not in report.batch.ignored_columns


def test_validator_state_is_per_batch(config: Config, to_csv: Callable) -> None:
    df = generate_applications(10, seed=44).drop(columns="default")
    batch = open_batch(to_csv(df), config)
    for _ in range(2):  # a second batch with the same ids is not full of duplicates
        assert validate_batch(batch, config).rows_quarantined == 0
    validator = BatchValidator(config)
    (chunk,) = list(iter_chunks(batch))
    assert len(validator.validate(chunk).quarantined) == 0
    again = validator.validate(chunk)  # the same validator has seen these ids
    assert len(again.quarantined) == 10
    assert set(again.issues["rule"]) == {"duplicate_id"}
