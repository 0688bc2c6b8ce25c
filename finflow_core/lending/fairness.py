"""Approval rates by protected group and the adverse impact ratio (the four-fifths rule).

For each protected column (config role ``protected``: sex, age band, ethnicity, women- or
minority-owned status...), each group's approval rate is divided by the most-approved
group's. A ratio under 0.8 is flagged, as fair-lending reviews do; a group too small for
its rate to mean much (fewer than ``min_group`` decided applications) is shown but never
flagged, and never taken as the reference. A flag is a reason to look, not a finding of
discrimination: legitimate credit factors can differ between groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

FOUR_FIFTHS = 0.8
MIN_GROUP = 30
COLUMNS = ("column", "group", "decided", "approved")


@dataclass(frozen=True)
class GroupRate:
    column: str
    group: str
    decided: int
    approved: int
    approval_rate: float
    impact_ratio: float | None  # approval rate over the reference group's
    reference: bool
    flagged: bool
    small: bool


def adverse_impact(counts: pd.DataFrame, *, threshold: float = FOUR_FIFTHS,
                   min_group: int = MIN_GROUP) -> list[GroupRate]:
    """``counts``: one row per (column, group) with decided and approved applications."""
    out: list[GroupRate] = []
    for column, part in counts.groupby("column", sort=True):
        part = part[part["decided"] > 0]
        rates = part["approved"] / part["decided"]
        big = part["decided"] >= min_group
        reference = rates[big].max() if big.any() else None
        ref_group = part.loc[rates[big].idxmax(), "group"] if big.any() else None
        for r, rate in zip(part.itertuples(index=False), rates, strict=True):
            ratio = float(rate / reference) if reference else None
            small = int(r.decided) < min_group
            out.append(GroupRate(
                str(column), str(r.group), int(r.decided), int(r.approved), float(rate), ratio,
                r.group == ref_group, bool(ratio is not None and ratio < threshold and not small), small,
            ))
    return out
