"""The case explanation in probability of default: from the base rate to the case's PD,
every reason code with a bar of its own."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.waterfall import ProbabilityWaterfall, probability_waterfall


def logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def squash(p: float) -> float:
    """A monotone stand-in for a calibrator."""
    return p ** 0.8


PARTS = [  # (feature, label, value, raw contribution in log-odds)
    ("credit_score", "Credit score", "520", 0.9),
    ("interest_rate", "Interest rate", "21.00%", 0.6),
    ("loan_to_income", "Loan relative to revenue", "0.15", -0.4),
    ("employees", "Employees", "3", 0.05),  # small, but a reason code
    *[(f"f{i}", f"Feature {i}", "1", 0.01 * (i + 1) * (-1) ** i) for i in range(10)],
]
BASE = -1.8


def _waterfall(**kw: object) -> ProbabilityWaterfall:
    raw = BASE + sum(p[3] for p in PARTS)
    return probability_waterfall(BASE, PARTS, logistic(raw), squash, probability=0.4321,
                                 cited={"credit_score", "employees"}, top=3, **kw)


def test_the_steps_run_from_the_base_rate_to_exactly_the_case_pd() -> None:
    wf = _waterfall()
    assert wf.link == "logit"
    assert wf.base == pytest.approx(squash(logistic(BASE)))
    assert wf.steps[0].start == wf.base
    assert wf.steps[-1].end == 0.4321 == wf.probability  # exactly, not approximately
    for before, after in zip(wf.steps, wf.steps[1:], strict=False):
        assert after.start == before.end  # a continuous path
    assert sum(s.change for s in wf.steps) == pytest.approx(0.4321 - wf.base, abs=1e-12)


def test_every_reason_code_has_its_own_bar_and_the_rest_is_summed() -> None:
    wf = _waterfall()
    drawn = [s.feature for s in wf.steps if s.feature is not None]
    assert drawn[:3] == ["credit_score", "interest_rate", "loan_to_income"]  # largest first
    assert "employees" in drawn  # a reason code, though smaller than the top 3
    others = wf.steps[-1]
    assert others.feature is None and others.label == "10 other features" and wf.grouped == 10
    assert others.contribution == pytest.approx(sum(p[3] for p in PARTS[4:]))
    assert [s.cited for s in wf.steps if s.feature] == [True, False, False, True]


def test_steps_keep_the_direction_of_their_contribution() -> None:
    wf = _waterfall()
    for s in wf.steps:
        if s.feature is not None:
            assert (s.change > 0) == (s.contribution > 0), s


def test_a_forest_whose_raw_output_is_a_probability_needs_no_logistic() -> None:
    parts = [("a", "A", "1", 0.2), ("b", "B", "2", -0.05)]
    wf = probability_waterfall(0.1, parts, 0.25, lambda p: p, 0.25)
    assert wf.link == "identity"
    assert [round(s.change, 12) for s in wf.steps] == [0.2, -0.05]
    assert wf.steps[-1].end == 0.25 and not wf.grouped


def test_the_model_waterfall_ends_at_the_scored_pd_with_every_reason(
    engine: ScoringEngine, bundle: ModelBundle, fresh_scored: object,
) -> None:
    d = fresh_scored.decisions
    flagged = d[d["decision"] != "approve"].head(5)
    valid: pd.DataFrame = fresh_scored.report.valid
    assert engine.explainer is not None
    for idx, row in flagged.iterrows():
        frame = valid.loc[[idx]]
        pd_scored = float(engine.predict(engine.features(frame))[0])
        assert pd_scored == pytest.approx(float(row["probability"]))  # the same application
        cited = [r["feature"] for r in row["reasons"]]
        wf = engine.explainer.waterfall(frame, float(row["probability"]), cited=cited)
        assert wf.link == ("logit" if bundle.model_name == "lightgbm" else "identity")
        assert wf.steps[-1].end == float(row["probability"])
        drawn = {s.feature for s in wf.steps}
        assert set(cited) <= drawn
        assert all(s.label and s.value for s in wf.steps)
        assert not np.isnan(wf.base) and 0 < wf.base < 1
