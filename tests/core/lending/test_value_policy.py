"""Unknown codes and missing-value texts: kept, mapped and counted per column's policy;
optional protected columns; cells as written never change."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.config import Config, parse_config
from finflow_core.lending.intake.reader import open_batch
from finflow_core.lending.intake.sources import iter_chunks
from finflow_core.lending.intake.validation import (
    MAPPED_COLUMNS,
    BatchValidator,
    mapping_lines,
    merge_mappings,
    validate_batch,
    validate_chunks,
)
from finflow_core.lending.synthetic import generate_applications

ROWS = 60


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    """A clean live batch with undeclared codes written into it."""
    df = generate_applications(ROWS, seed=61).drop(columns="default").astype(object)
    df["employees"] = [("" if pd.isna(v) else str(v)) for v in df["employees"]]
    df.loc[[2, 5, 9], "industry"] = "mining"
    df.loc[11, "industry"] = "XX"
    df.loc[14, "region"] = "West"
    df.loc[17, "collateral"] = "full "
    df.loc[20, "industry"] = "=cmd|' /C calc'!A0"  # a formula is never kept
    df.loc[23, "credit_score"] = "n/a"  # quarantined for another rule: its code is not counted
    df.loc[23, "industry"] = "mining"
    return df


def _cfg(config: Config, **by_column: dict[str, Any]) -> Config:
    cols = tuple(dataclasses.replace(c, **by_column[c.name]) if c.name in by_column else c
                 for c in config.columns)
    return dataclasses.replace(config, columns=cols)


def test_by_default_unknown_codes_keep_the_row_and_are_counted(
    batch: pd.DataFrame, config: Config, to_csv: Callable
) -> None:
    report = validate_batch(to_csv(batch), config)
    assert set(report.quarantined["row_number"]) == {21, 24}
    assert report.issues.set_index("row_number")["rule"].to_dict() == {21: "formula", 24: "number"}
    valid = report.valid.set_index(pd.Index(report.row_numbers))
    assert valid.loc[[3, 6, 10, 12], "industry"].isna().all()
    assert pd.isna(valid.loc[15, "region"])
    assert pd.isna(valid.loc[18, "collateral"])
    assert valid["industry"].notna().sum() == ROWS - 2 - 4
    assert list(report.mapped.columns) == MAPPED_COLUMNS
    counts = {(r.column, r.value): (r.mapped_to, r.count) for r in report.mapped.itertuples()}
    assert counts == {("industry", "mining"): ("missing", 3), ("industry", "XX"): ("missing", 1),
                      ("region", "West"): ("missing", 1), ("collateral", "full "): ("missing", 1)}
    assert "industry: 'mining' ×3 mapped to missing" in report.mapping_lines()


def test_the_cells_as_written_stay_unchanged(batch: pd.DataFrame, config: Config,
                                             to_csv: Callable) -> None:
    (chunk,) = list(validate_chunks(open_batch(to_csv(batch), config), config))
    kept = chunk.valid_raw.set_index(pd.Index(chunk.row_numbers))
    assert kept.loc[3, "industry"] == "mining" and kept.loc[18, "collateral"] == "full "
    assert pd.isna(chunk.valid.loc[list(chunk.row_numbers).index(3), "industry"])


def test_quarantine_policy_keeps_todays_behaviour(batch: pd.DataFrame, config: Config,
                                                  to_csv: Callable) -> None:
    strict = _cfg(config, industry={"on_unknown": "quarantine"})
    report = validate_batch(to_csv(batch), strict)
    rules = report.issues.groupby("row_number")["rule"].agg(set).to_dict()
    assert rules == {3: {"category"}, 6: {"category"}, 10: {"category"}, 12: {"category"},
                     21: {"formula", "category"}, 24: {"number", "category"}}
    assert "(retail, hospitality" in report.issues["message"].iloc[0]
    assert set(report.mapped["column"]) == {"region", "collateral"}  # still mapped there


def test_other_policy_maps_to_the_declared_category(batch: pd.DataFrame, config: Config,
                                                    to_csv: Callable) -> None:
    cfg = _cfg(config, collateral={"on_unknown": "other", "other": "none"})
    report = validate_batch(to_csv(batch), cfg)
    valid = report.valid.set_index(pd.Index(report.row_numbers))
    assert valid.loc[18, "collateral"] == "none"
    assert list(valid["collateral"].cat.categories) == ["none", "partial", "full"]
    row = report.mapped[report.mapped["column"] == "collateral"].iloc[0]
    assert (row["value"], row["mapped_to"], row["count"]) == ("full ", "none", 1)


def test_declared_missing_texts_read_as_blank(config: Config, to_csv: Callable) -> None:
    df = generate_applications(12, seed=62).drop(columns="default").astype(object)
    df["employees"] = [str(int(v)) if pd.notna(v) else "" for v in df["employees"]]
    df.loc[[1, 4], "employees"] = "NA"
    df.loc[6, "employees"] = " ? "
    df.loc[8, "credit_score"] = "NA"  # credit_score is not nullable: a missing value fails
    cfg = _cfg(config, employees={"missing_values": ("NA", "?")},
               credit_score={"missing_values": ("NA",)})
    report = validate_batch(to_csv(df), cfg)
    assert report.issues[["row_number", "column", "rule", "value"]].values.tolist() == [
        [9, "credit_score", "not_null", "NA"]]
    valid = report.valid.set_index(pd.Index(report.row_numbers))
    assert valid.loc[[2, 5, 7], "employees"].isna().all()
    counts = {(r.value, r.count) for r in report.mapped.itertuples() if r.column == "employees"}
    assert counts == {("NA", 2), (" ? ", 1)}
    # without the declaration, the same texts are unreadable numbers
    plain = validate_batch(to_csv(df), config)
    assert set(plain.issues["rule"]) == {"number"} and plain.rows_quarantined == 4


def test_chunk_counts_add_up_to_the_batch(batch: pd.DataFrame, config: Config,
                                          to_csv: Callable) -> None:
    whole = validate_batch(to_csv(batch), config).mapped
    parts = list(validate_chunks(open_batch(to_csv(batch), config), config, chunk_rows=4))
    merged = merge_mappings(p.mapped for p in parts)
    pd.testing.assert_frame_equal(merged, whole)
    assert mapping_lines(merged)[0] == "collateral: 'full ' ×1 mapped to missing"
    assert merge_mappings([]).empty


@pytest.fixture(scope="module")
def with_sex(default_raw: dict[str, Any]) -> Config:
    raw = copy.deepcopy(default_raw)
    raw["dataset"]["columns"].append({"name": "owner_sex", "type": "category",
                                      "categories": ["F", "M"], "role": "protected",
                                      "nullable": True, "required": False})
    return parse_config(raw)


def test_a_protected_column_is_validated_and_kept(with_sex: Config, to_csv: Callable) -> None:
    df = generate_applications(20, seed=63).drop(columns="default")
    df["owner_sex"] = ["F", "M", "", "X"] * 5
    report = validate_batch(to_csv(df), with_sex)
    assert report.rows_quarantined == 0
    assert report.valid["owner_sex"].astype(object).tolist()[:4] == ["F", "M", np.nan, np.nan]
    assert report.mapping_lines() == ["owner_sex: 'X' ×5 mapped to missing"]
    assert not any("owner_sex" in w for w in report.warnings)
    validator = BatchValidator(with_sex)
    (chunk,) = list(iter_chunks(open_batch(to_csv(df), with_sex)))
    assert "owner_sex" in validator.validate(chunk).valid_raw.columns


def test_an_optional_protected_column_may_be_absent(with_sex: Config, to_csv: Callable) -> None:
    df = generate_applications(20, seed=64).drop(columns="default")
    report = validate_batch(to_csv(df), with_sex)
    assert report.rows_valid == 20
    assert report.valid["owner_sex"].isna().all()
    assert list(report.valid.columns) == [c.name for c in with_sex.batch_columns]
    assert any("optional column(s) not in the file: owner_sex" in w for w in report.warnings)
    (chunk,) = list(validate_chunks(open_batch(to_csv(df), with_sex), with_sex))
    assert "owner_sex" not in chunk.valid_raw.columns  # no cell is made up


def test_a_long_mapped_cell_is_clipped_in_the_warning_line_not_in_the_counts() -> None:
    """A file may hold a code of a megabyte: the line a person reads stays short."""
    mapped = pd.DataFrame({"column": ["industry"], "value": ["x" * 1_000_000],
                           "mapped_to": ["missing"], "count": [2]})
    line = mapping_lines(mapped)[0]
    assert len(line) < 120 and line.startswith("industry: 'xxx") and "…' ×2 mapped to missing" in line
    assert len(mapped["value"].iat[0]) == 1_000_000  # the export keeps the cell as written
