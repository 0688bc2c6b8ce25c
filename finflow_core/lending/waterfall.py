"""One application's explanation as steps of probability of default (the officer's waterfall)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One bar of the waterfall: a feature (or several small ones) moving the PD."""

    feature: str | None  # None: the features too small to draw one by one, summed
    label: str
    value: str  # as the application table shows it
    contribution: float  # SHAP value in the model's raw output
    start: float  # probability of default before this step
    end: float  # and after it
    cited: bool = False  # one of the case's reason codes

    @property
    def change(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class ProbabilityWaterfall:
    """A case's explanation in probability of default.

    SHAP values add up in the model's raw output (log-odds for boosted trees, probability
    for a forest). The steps add them one at a time, largest first, and turn each running
    total into a probability (through the logistic function when the raw output is
    log-odds); the probability path is then scaled between its two ends so it starts at
    the calibrated base rate (the PD of an application scored at the model's average) and
    ends exactly at the case's calibrated PD. Because the logistic curve is not a straight
    line, a step's size depends on where in the sequence it comes; the steps always add up
    to the difference between the case's PD and the base rate.
    """

    base: float
    probability: float
    steps: list[Step]
    link: str  # "logit" (raw output is log-odds), "identity" (a probability) or "linear"

    @property
    def grouped(self) -> int:
        """How many features the "other features" bar sums (0: none)."""
        return next((int(s.value) for s in self.steps if s.feature is None), 0)


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def probability_waterfall(base_value: float, parts: Sequence[tuple[str, str, str, float]],
                          uncalibrated: float, calibrated: Callable[[float], float],
                          probability: float, *, cited: set[str] | frozenset[str] = frozenset(),
                          top: int = 8) -> ProbabilityWaterfall:
    """The steps of :class:`ProbabilityWaterfall` from ``parts`` (feature, label, value
    text, raw SHAP value); ``uncalibrated`` is the model's own probability for the case,
    which tells whether the raw output is log-odds or a probability."""
    raw_total = base_value + sum(p[3] for p in parts)
    to_p: Callable[[float], float]
    if abs(raw_total - uncalibrated) <= 1e-6:
        link, to_p = "identity", (lambda r: min(1.0, max(0.0, r)))
    elif abs(_logistic(raw_total) - uncalibrated) <= 1e-6:
        link, to_p = "logit", _logistic
    else:  # neither (should not happen with tree SHAP): spread the change in proportion
        link, to_p = "linear", (lambda r: r)
    ordered = sorted(parts, key=lambda p: -abs(p[3]))
    shown = [p for i, p in enumerate(ordered) if i < top or p[0] in cited]
    drawn = {p[0] for p in shown}
    rest = [p for p in ordered if p[0] not in drawn]
    bars: list[tuple[str | None, str, str, float]] = list(shown)
    if rest:
        bars.append((None, f"{len(rest)} other features", str(len(rest)), sum(p[3] for p in rest)))
    running = [base_value]
    for bar in bars:
        running.append(running[-1] + bar[3])
    q = [to_p(r) for r in running]
    p0 = calibrated(min(1.0, max(0.0, to_p(base_value))))
    span = q[-1] - q[0]
    scale = (probability - p0) / span if span else 0.0
    path = [p0 + (qk - q[0]) * scale for qk in q]
    path[-1] = probability  # the bars end exactly at the case's PD
    steps = [Step(b[0], b[1], b[2], b[3], path[k], path[k + 1], b[0] in cited)
             for k, b in enumerate(bars)]
    return ProbabilityWaterfall(p0, probability, steps, link)
