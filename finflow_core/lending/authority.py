"""Lending authority and four eyes: when an officer's decision needs a second officer.

Pure rules, no database. Two things make a decision need a second person:

- **authority**: each officer may commit the lender up to an amount an admin sets (their
  lending limit). An approval (by default; ``review.four_eyes.outcomes``) of a loan above
  the deciding officer's limit must be confirmed by another officer whose limit covers it.
- **override**: the model suggests *approve* below the strategy's cut-off and *decline* at
  or above it (outside the review band that is what it decided by itself). A manual
  approve or decline against that suggestion is an override; it needs a second officer
  when it also lies more than ``review.override_distance`` (probability of default, as a
  fraction) beyond the band edge where the model would have made that decision itself:
  approving above ``low_edge + distance``, declining below ``high_edge - distance``.

Overrides are also what the override rate counts (manual approve / decline decisions
against the suggestion, over all manual approve / decline decisions): lenders treat a
rate above 5-10% as a sign that officers do not trust the model, or should not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from finflow_core.lending.terms import Outcome


class SecondLook(StrEnum):
    """Why a decision needs a second officer."""

    AUTHORITY = "authority"
    OVERRIDE = "override"


class ProposalStatus(StrEnum):
    """Where a decision awaiting a second officer stands."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class Edges:
    """What the model said about a case: its PD against the strategy that routed it."""

    probability: float
    low_edge: float  # below: approved automatically
    high_edge: float  # at or above: declined automatically
    cutoff: float  # the strategy's cut-off (clamped into the band)

    @classmethod
    def of(cls, probability: float, low_edge: float, high_edge: float,
           cutoff: float | None) -> Edges:
        """Edges with the cut-off clamped into [low, high] (a manager may have moved the
        edges past the model's own cut-off); no cut-off known: the middle of the band."""
        c = (low_edge + high_edge) / 2 if cutoff is None or math.isnan(cutoff) else cutoff
        return cls(float(probability), float(low_edge), float(high_edge),
                   min(max(float(c), float(low_edge)), float(high_edge)))

    @property
    def suggestion(self) -> Outcome:
        """What the model would do: approve below the cut-off, decline at or above it."""
        return Outcome.APPROVE if self.probability < self.cutoff else Outcome.DECLINE

    def distance(self, outcome: Outcome) -> float:
        """How far (in PD) a decision lies beyond the edge where the model makes it itself."""
        if outcome is Outcome.APPROVE:
            return self.probability - self.low_edge
        if outcome is Outcome.DECLINE:
            return self.high_edge - self.probability
        return 0.0


def is_override(outcome: Outcome, suggestion: Outcome) -> bool:
    """A final manual decision (approve or decline) against the model's suggestion."""
    return outcome in (Outcome.APPROVE, Outcome.DECLINE) and outcome != suggestion


@dataclass(frozen=True)
class AuthorityRules:
    """The configured four-eyes rules of one installation."""

    override_distance: float | None = None  # None: overrides never need a second officer
    default_limit: float | None = None  # authority of an officer with no limit set (None: none)
    outcomes: frozenset[Outcome] = frozenset({Outcome.APPROVE})  # decisions a limit applies to

    def limit_of(self, limit: float | None) -> float | None:
        """An officer's authority: their own limit, else the configured default."""
        return self.default_limit if limit is None else limit

    def covers(self, limit: float | None, amount: float, outcome: Outcome) -> bool:
        """Whether an officer with ``limit`` may make ``outcome`` on ``amount`` alone."""
        authority = self.limit_of(limit)
        return outcome not in self.outcomes or authority is None or amount <= authority

    def second_looks(self, outcome: Outcome, amount: float, limit: float | None,
                     edges: Edges) -> tuple[SecondLook, ...]:
        """Why this decision by an officer with ``limit`` needs a second officer (empty: it
        does not)."""
        needs: list[SecondLook] = []
        if not self.covers(limit, amount, outcome):
            needs.append(SecondLook.AUTHORITY)
        if (self.override_distance is not None and is_override(outcome, edges.suggestion)
                and edges.distance(outcome) > self.override_distance):
            needs.append(SecondLook.OVERRIDE)
        return tuple(needs)


def needs_text(needs: Iterable[SecondLook | str]) -> str:
    """As stored: ``authority,override``."""
    return ",".join(sorted(str(n) for n in needs))


def parse_needs(text: str | None) -> tuple[SecondLook, ...]:
    return tuple(SecondLook(t) for t in (text or "").split(",") if t)
