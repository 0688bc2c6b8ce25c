"""The adverse impact ratio: each group's approval rate over the most-approved group's."""

from __future__ import annotations

import pandas as pd

from finflow_core.lending.fairness import adverse_impact


def test_a_group_approved_at_under_four_fifths_of_the_best_rate_is_flagged() -> None:
    counts = pd.DataFrame({"column": "sex", "group": ["F", "M", "X"],
                           "decided": [400, 500, 10], "approved": [200, 350, 1]})
    rates = {g.group: g for g in adverse_impact(counts)}
    assert rates["M"].reference and rates["M"].impact_ratio == 1.0
    assert round(rates["F"].impact_ratio, 4) == round(0.5 / 0.7, 4) and rates["F"].flagged
    assert rates["X"].small and not rates["X"].flagged  # 10 decisions: shown, never flagged
    fair = pd.DataFrame({"column": "sex", "group": ["F", "M"], "decided": [400, 500], "approved": [260, 350]})
    assert not any(g.flagged for g in adverse_impact(fair))  # 0.65 / 0.70 = 0.93


def test_small_groups_are_never_the_reference() -> None:
    counts = pd.DataFrame({"column": "age_band", "group": ["18-25", "26-60", "60+"],
                           "decided": [5, 800, 300], "approved": [5, 480, 150]})
    rates = {g.group: g for g in adverse_impact(counts)}
    assert rates["26-60"].reference and not rates["18-25"].reference
    assert rates["60+"].impact_ratio == 0.5 / 0.6 and rates["60+"].flagged is False  # 0.83
