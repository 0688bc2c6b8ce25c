"""The training-data check: quarantine share, biased quarantine, and no valid rows at all."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from finflow_core.errors import TrainingError
from finflow_core.lending.config import Config
from finflow_core.lending.intake.validation import ValidationReport, validate_batch
from finflow_core.lending.model.bundle import build_bundle
from finflow_core.lending.model.training import TrainingResult
from finflow_core.lending.model.training_data import (
    check_training_data,
    compare_rates,
    fisher_exact,
)
from finflow_core.lending.synthetic import generate_applications


def test_a_clean_file_passes(training_report: ValidationReport, config: Config) -> None:
    check = check_training_data(training_report, config)
    assert (check.rows_in, check.rows_kept, check.rows_quarantined) == (4000, 4000, 0)
    assert check.quarantine_share == 0.0 and not check.over_limit
    assert check.test is None and check.p_value is None and not check.significant
    assert check.kept_default_rate == pytest.approx(training_report.valid["default"].mean())
    assert check.warnings == ()
    check.enforce()  # nothing to refuse
    json.dumps(check.to_dict())


@pytest.fixture(scope="module")
def biased(config: Config, to_csv: Callable) -> ValidationReport:
    """A file whose quarantined rows are mostly defaulters (a slip that hits one kind of row)."""
    df = generate_applications(3000, seed=71).astype(object)
    bad = df.index[(df["default"] == 1)][:150].tolist() + df.index[df["default"] == 0][:50].tolist()
    df.loc[bad, "credit_score"] = "n/a"
    df.loc[bad[:5], "default"] = "?"  # an unreadable outcome is not counted either way
    return validate_batch(to_csv(df), config, require_target=True)


def test_a_biased_quarantine_is_found_and_worded(biased: ValidationReport, config: Config) -> None:
    check = check_training_data(biased, config)
    assert check.rows_quarantined == 200 and check.rows_kept == 2800
    assert check.quarantine_share == pytest.approx(200 / 3000, abs=1e-6)
    assert check.over_limit  # 6.7% > 5%
    assert check.quarantined_with_outcome == 195 and check.quarantined_defaults == 145
    assert check.quarantined_default_rate == pytest.approx(145 / 195, abs=1e-6)
    y = biased.valid["default"].to_numpy(dtype=float)
    assert check.kept_default_rate == pytest.approx(y.mean(), abs=1e-6)
    assert check.test == "two-proportion z" and check.p_value < 1e-10 and check.significant
    assert check.top_issues[0] == ("number", "credit_score", 200)
    assert len(check.warnings) == 2
    assert "above the limit of 5.0% (model.max_quarantine_share)" in check.warnings[0]
    assert "defaulted at 74.4%" in check.warnings[1] and f"{y.mean():.1%} of kept rows" in check.warnings[1]
    with pytest.raises(TrainingError, match="model.max_quarantine_share") as exc:
        check.enforce()
    assert exc.value.exit_code == 6
    check.enforce(allow_over_limit=True)
    card = check.to_dict()
    assert card["over_limit"] is True and card["top_issues"][0] == {
        "rule": "number", "column": "credit_score", "rows": 200}
    json.dumps(card)


def test_a_random_quarantine_is_not_significant(config: Config, to_csv: Callable) -> None:
    df = generate_applications(3000, seed=72).astype(object)
    df.loc[np.arange(0, 3000, 20), "credit_score"] = "n/a"  # every 20th row, whatever its outcome
    check = check_training_data(validate_batch(to_csv(df), config, require_target=True), config)
    assert check.rows_quarantined == 150 and not check.over_limit
    assert check.p_value > 0.05 and not check.significant
    assert check.warnings == ()


def test_no_valid_row_names_quarantine_and_its_rules(config: Config, to_csv: Callable) -> None:
    df = generate_applications(1000, seed=73).astype(object)
    df["industry"] = "Retail"  # an industry code written differently throughout
    strict = config.column("industry")
    cfg = _quarantining_industry(config)
    report = validate_batch(to_csv(df), cfg, require_target=True)
    assert report.rows_valid == 0 and strict.on_unknown == "missing"
    with pytest.raises(TrainingError) as exc:
        check_training_data(report, cfg)
    assert str(exc.value).startswith("all 1,000 training rows were quarantined: category ×1,000 on "
                                     "industry")
    assert exc.value.details["top_issues"][0] == {"rule": "category", "column": "industry",
                                                  "rows": 1000}


def _quarantining_industry(config: Config) -> Config:
    import dataclasses

    cols = tuple(dataclasses.replace(c, on_unknown="quarantine") if c.name == "industry" else c
                 for c in config.columns)
    return dataclasses.replace(config, columns=cols)


def test_mapped_values_are_recorded(config: Config, to_csv: Callable) -> None:
    df = generate_applications(400, seed=74).astype(object)
    df.loc[:11, "region"] = "XX"
    check = check_training_data(validate_batch(to_csv(df), config, require_target=True), config)
    assert check.rows_quarantined == 0
    assert check.mapped_values == (("region", "XX", "missing", 12),)


def test_rate_comparisons_by_hand() -> None:
    # 30/1000 against 60/1000: pooled 0.045, se = sqrt(.045*.955*.002) = 0.009271
    test, p = compare_rates(30, 1000, 60, 1000)
    z = 0.03 / math.sqrt(0.045 * 0.955 * 0.002)
    assert test == "two-proportion z" and p == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert p == pytest.approx(0.001212, abs=1e-6)
    # small counts: Fisher exact; the classic tea-tasting table (3 of 4 right) gives 0.4857
    assert compare_rates(3, 4, 1, 4)[0] == "fisher exact"
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(0.4857, abs=1e-4)
    assert fisher_exact(2, 40, 5, 12) == pytest.approx(0.0049, abs=1e-4)  # checked with scipy
    assert fisher_exact(0, 10, 0, 10) == 1.0
    assert compare_rates(5, 100, 0, 0) == (None, None)


def test_the_model_card_records_the_check(trained: TrainingResult, training_frame: pd.DataFrame,
                                          training_report: ValidationReport, config: Config) -> None:
    check = check_training_data(training_report, config)
    bundle = build_bundle(trained, training_frame, config, training_sha256="0" * 64,
                          version="20260105T000000Z-check001", training_data=check)
    assert bundle.card["training_data"]["rows_kept"] == 4000
    assert bundle.card["training_data"]["significant"] is False
    assert bundle.card["pricing"] == config.pricing.to_dict()
    json.dumps(bundle.card, allow_nan=False)
