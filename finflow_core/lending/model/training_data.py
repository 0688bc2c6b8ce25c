"""Does the training data tell the truth? What the quality gate kept, and whether it is biased.

A model learns only from the rows that pass the quality gate. When many rows are
quarantined, or the quarantined rows default at a different rate from the kept ones (a
config slip that quarantines one kind of applicant), the model learns from a biased
subset and says nothing. :func:`check_training_data` measures both: the quarantine share
against ``model.max_quarantine_share``, and the default rates of kept and quarantined rows
(the outcome read from the quarantined rows' cells where it is readable) with a
two-proportion z-test, or Fisher's exact test when counts are small.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.errors import TrainingError
from finflow_core.lending.config import Config
from finflow_core.lending.intake.schema import read_column
from finflow_core.lending.intake.validation import ValidationReport

#: Expected count per cell below which the z-test's normal approximation is not trusted.
MIN_EXPECTED = 5


@dataclass(frozen=True)
class TrainingDataCheck:
    """What training will learn from; :meth:`to_dict` is what the model card records."""

    rows_in: int
    rows_kept: int
    rows_quarantined: int
    quarantine_share: float
    max_quarantine_share: float
    kept_defaults: int
    kept_default_rate: float
    quarantined_with_outcome: int  # quarantined rows whose outcome cell could be read
    quarantined_defaults: int
    quarantined_default_rate: float | None
    test: str | None  # "two-proportion z" | "fisher exact" | None (nothing to compare)
    p_value: float | None
    significant: bool
    alpha: float
    top_issues: tuple[tuple[str, str, int], ...]  # (rule, column, rows), most rows first
    mapped_values: tuple[tuple[str, str, str, int], ...]  # (column, value, mapped_to, rows)
    warnings: tuple[str, ...]

    @property
    def over_limit(self) -> bool:
        return self.quarantine_share > self.max_quarantine_share

    def enforce(self, allow_over_limit: bool = False) -> None:
        """Refuse (TrainingError) a file whose quarantine share passes the configured limit."""
        if self.over_limit and not allow_over_limit:
            raise TrainingError(
                f"{self.warnings[0]}; fix the config or the file, or allow it explicitly "
                "(finflow train --allow-quarantine)",
                rows=self.rows_in, quarantined=self.rows_quarantined,
                limit=self.max_quarantine_share,
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top_issues"] = [{"rule": r, "column": c, "rows": n} for r, c, n in self.top_issues]
        d["mapped_values"] = [{"column": c, "value": v, "mapped_to": m, "rows": n}
                              for c, v, m, n in self.mapped_values]
        d["warnings"] = list(self.warnings)
        d["over_limit"] = self.over_limit
        return d


def check_training_data(report: ValidationReport, config: Config, *,
                        alpha: float = 0.05) -> TrainingDataCheck:
    """Measure a training file's quality-gate result (validated with ``require_target=True``).

    Raises TrainingError naming quarantine and its top rules when no row is valid.
    """
    target = config.target_column
    n_in, kept, quarantined = report.rows_in, report.rows_valid, report.rows_quarantined
    top = _top_issues(report.issues)
    if kept == 0:
        rules = ", ".join(f"{rule} ×{rows:,} on {column}" for rule, column, rows in top[:3])
        raise TrainingError(
            f"all {n_in:,} training rows were quarantined: {rules or 'see the quarantine report'}; "
            "fix the config or the file (the quarantine report lists every row)",
            rows=n_in, quarantined=quarantined,
            top_issues=[{"rule": r, "column": c, "rows": n} for r, c, n in top[:3]],
        )
    y_kept = pd.to_numeric(report.valid[target], errors="coerce").to_numpy(dtype=float)
    kept_defaults = int(np.nansum(y_kept))
    q_outcomes = quarantined_outcomes(report, config)
    n_q, q_defaults = len(q_outcomes), int(q_outcomes.sum())
    test, p_value = compare_rates(kept_defaults, kept, q_defaults, n_q)
    share = quarantined / n_in if n_in else 0.0
    limit = config.model.max_quarantine_share
    kept_rate = kept_defaults / kept
    q_rate = q_defaults / n_q if n_q else None
    significant = p_value is not None and p_value < alpha
    warnings = []
    if share > limit:
        warnings.append(f"{quarantined:,} of {n_in:,} training rows ({share:.1%}) were "
                        f"quarantined, above the limit of {limit:.1%} (model.max_quarantine_share)")
    if significant:
        warnings.append(
            f"quarantined rows defaulted at {q_rate:.1%} ({q_defaults:,} of {n_q:,} with a "
            f"readable outcome) against {kept_rate:.1%} of kept rows ({kept_defaults:,} of "
            f"{kept:,}); {test} p = {p_value:.2g}: the model would learn from a biased subset"
        )
    mapped = tuple((str(r.column), str(r.value), str(r.mapped_to), int(r.count))
                   for r in report.mapped.itertuples(index=False))
    return TrainingDataCheck(
        rows_in=n_in, rows_kept=kept, rows_quarantined=quarantined,
        quarantine_share=round(share, 6), max_quarantine_share=limit,
        kept_defaults=kept_defaults, kept_default_rate=round(kept_rate, 6),
        quarantined_with_outcome=n_q, quarantined_defaults=q_defaults,
        quarantined_default_rate=None if q_rate is None else round(q_rate, 6),
        test=test, p_value=p_value, significant=significant, alpha=alpha,
        top_issues=top, mapped_values=mapped, warnings=tuple(warnings),
    )


def quarantined_outcomes(report: ValidationReport, config: Config) -> np.ndarray:
    """The 0/1 outcomes of quarantined rows whose outcome cell reads as 0 or 1."""
    target = config.target_column
    q = report.quarantined
    if len(q) == 0 or target not in q.columns:
        return np.array([], dtype=np.int64)
    cells = q[target].astype(object).where(q[target].notna(), "").astype(str)
    read = read_column(cells.reset_index(drop=True), config.column(target))
    values = read.values.to_numpy(dtype=float)
    ok = ~read.blank & ~read.unreadable & np.isin(values, (0.0, 1.0))
    return values[ok].astype(np.int64)


def compare_rates(d1: int, n1: int, d2: int, n2: int) -> tuple[str | None, float | None]:
    """Two-sided test that two default rates are equal: (test name, p-value)."""
    if n1 == 0 or n2 == 0:
        return None, None
    pooled = (d1 + d2) / (n1 + n2)
    expected = min(n1 * pooled, n1 * (1 - pooled), n2 * pooled, n2 * (1 - pooled))
    if expected >= MIN_EXPECTED:
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (d2 / n2 - d1 / n1) / se
        return "two-proportion z", math.erfc(abs(z) / math.sqrt(2))
    return "fisher exact", fisher_exact(d1, n1, d2, n2)


def fisher_exact(d1: int, n1: int, d2: int, n2: int) -> float:
    """Two-sided Fisher exact p-value of the 2x2 table (defaults, repaid) x (group 1, 2)."""
    total, defaults = n1 + n2, d1 + d2

    def log_pmf(x: int) -> float:  # x defaults among group 2 (hypergeometric)
        return (_log_choose(defaults, x) + _log_choose(total - defaults, n2 - x)
                - _log_choose(total, n2))

    lo, hi = max(0, n2 - (total - defaults)), min(defaults, n2)
    observed = log_pmf(d2)
    p = sum(math.exp(lp) for lp in (log_pmf(x) for x in range(lo, hi + 1))
            if lp <= observed + 1e-7)
    return min(1.0, p)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _top_issues(issues: pd.DataFrame) -> tuple[tuple[str, str, int], ...]:
    if issues.empty:
        return ()
    rows = issues.drop_duplicates(["row_number", "column", "rule"]).groupby(
        ["rule", "column"], sort=False).size().sort_values(ascending=False, kind="stable")
    return tuple((str(r), str(c), int(n)) for (r, c), n in rows.items())
