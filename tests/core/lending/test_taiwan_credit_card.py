"""The public Taiwan credit-card default file (``UCI_Credit_Card.csv``, 60 rows as
published) read through a lender's config: no rate (cut-off by a bad-rate target), the
applicant's sex, marriage and age protected, undocumented education codes, and two ages
written ``nan``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from lender_files import config_in_fresh_home

from finflow_core.lending.config import Config, load_yaml, parse_config
from finflow_core.lending.intake.validation import validate_batch

FIXTURES = Path(__file__).parents[1] / "fixtures"
CSV = FIXTURES / "taiwan_credit_card_sample.csv"
CONFIG = FIXTURES / "taiwan_credit_card.yaml"


@pytest.fixture(scope="module")
def lender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    yield from config_in_fresh_home(tmp_path_factory, CONFIG, "taiwan_home")


@pytest.fixture(scope="module")
def raw_file() -> pd.DataFrame:
    return pd.read_csv(CSV, dtype=str, keep_default_na=False)


def test_an_age_written_nan_is_quarantined_with_the_key_that_reads_it(
        lender: Config, raw_file: pd.DataFrame) -> None:
    report = validate_batch(CSV, lender, require_target=True)
    assert report.rows_in == len(raw_file) == report.rows_valid + report.rows_quarantined
    issues = report.issues
    assert issues["column"].tolist() == ["AGE", "AGE"] and set(issues["rule"]) == {"number"}
    assert sorted(issues["application_id"]) == sorted(raw_file.loc[raw_file["AGE"] == "nan", "ID"])
    assert issues["message"].iat[0] == (
        "AGE: must be a number, got 'nan' (a text that usually means no value: if it does, "
        "declare missing_values: ['nan'] and nullable: true for this column)")
    assert {"EDUCATION: '5' ×3 mapped to 4", "EDUCATION: '6' ×3 mapped to 4",
            "MARRIAGE: '0' ×2 mapped to missing"} <= set(
        report.mapping_lines())


def test_declared_as_no_value_the_two_ages_are_kept_as_missing(raw_file: pd.DataFrame,
                                                                lender: Config) -> None:
    doc = load_yaml(CONFIG.read_text())
    age = next(c for c in doc["dataset"]["columns"] if c["name"] == "AGE")
    age.update(missing_values=["nan"], nullable=True)
    report = validate_batch(CSV, parse_config(doc), require_target=True)
    assert report.rows_quarantined == 0 and report.rows_valid == len(raw_file)
    assert "AGE: 'nan' ×2 mapped to missing" in report.mapping_lines()
    assert lender.pricing.mode == "none" and not lender.warnings  # protected, so no hint
