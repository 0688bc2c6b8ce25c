"""The business settings of a config: economics, pricing, strategy, model, monitoring, people.

Each class is one YAML section, declared with its defaults; unknown settings and values of
the wrong type are refused (a quoted number is text). Defaults here are the demo's.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ValidationInfo, model_validator
from pydantic.dataclasses import dataclass

from finflow_core.lending.config.fields import (
    DECLARED,
    Fraction,
    FrozenParams,
    NotNegative,
    Params,
    Positive,
    Problem,
    Text,
    Whole,
)

KNOWN_CANDIDATES: tuple[str, ...] = ("random_forest", "lightgbm", "hist_gradient_boosting")
CUTOFF_METHODS: tuple[str, ...] = ("profit", "max_bad_rate", "approval_rate")
Candidate = Literal["random_forest", "lightgbm", "hist_gradient_boosting"]


@dataclass(frozen=True, config=DECLARED)
class Economics:
    """What a loan earns and loses, and what a credit officer costs and adds."""

    loss_given_default: Fraction = 0.45
    cost_of_funds: NotNegative = 0.04
    review_cost: NotNegative = 120.0
    review_default_detection: Fraction = 0.5
    review_good_decline: Fraction = 0.1
    currency: Text = "USD"


def _no_high_band(v: Any) -> Any:
    if isinstance(v, dict) and "high" in v:
        raise Problem("high-band applications are declined automatically: they need no rate "
                      "(give low and medium)", ("high",))
    return v


@dataclass(frozen=True, config=DECLARED)
class RateByBand:
    """Risk-based pricing: the rate an approved (low band) and a reviewed (medium) loan gets."""

    low: Fraction
    medium: Fraction


@dataclass(frozen=True, config=DECLARED)
class PricingSection:
    """Pricing figures the file does not carry: a product rate and term, or a rate by band."""

    interest_rate: Fraction | None = None
    rate_by_band: Annotated[RateByBand | None, BeforeValidator(_no_high_band)] = None
    term_months: Whole | None = None

    @model_validator(mode="after")
    def _one_rate(self) -> PricingSection:
        if self.interest_rate is not None and self.rate_by_band is not None:
            raise Problem("give interest_rate or rate_by_band, not both", ("rate_by_band",))
        if self.term_months is not None and not 1 <= self.term_months <= 600:
            raise Problem(f"must be 1 to 600 months, got {self.term_months}", ("term_months",))
        return self


@dataclass(frozen=True)
class Pricing:
    """Where each pricing figure comes from: a file column, the config (assumed), or nowhere.

    ``mode`` is ``file`` (rate and term from the file), ``config`` (at least one figure is
    an assumption written in the config: see ``assumed``) or ``none`` (no rate at all: the
    cut-off is chosen by a bad-rate or approval-rate target, and no profit is reported).
    """

    rate_column: str | None = None
    term_column: str | None = None
    interest_rate: float | None = None
    rate_by_band: RateByBand | None = None
    term_months: int | None = None

    @property
    def priced(self) -> bool:
        return self.rate_column is not None or self.interest_rate is not None or (
            self.rate_by_band is not None
        )

    @property
    def assumed(self) -> frozenset[str]:
        """Names (as written under ``pricing:``) of the figures that are assumptions."""
        names = {"interest_rate": self.interest_rate, "rate_by_band": self.rate_by_band,
                 "term_months": self.term_months}
        return frozenset(k for k, v in names.items() if v is not None)

    @property
    def mode(self) -> Literal["file", "config", "none"]:
        if not self.priced:
            return "none"
        return "config" if self.assumed else "file"

    def to_dict(self) -> dict[str, Any]:
        band = self.rate_by_band
        return {
            "mode": self.mode, "assumed": sorted(self.assumed),
            "rate_column": self.rate_column, "term_column": self.term_column,
            "interest_rate": self.interest_rate, "term_months": self.term_months,
            "rate_by_band": None if band is None else {"low": band.low, "medium": band.medium},
        }


@dataclass(frozen=True, config=DECLARED)
class CutoffRule:
    """How the cut-off is chosen: by profit (needs pricing) or by a target."""

    by: Literal["profit", "max_bad_rate", "approval_rate"] = "profit"
    value: Fraction | None = None

    @model_validator(mode="after")
    def _value(self) -> CutoffRule:
        if self.by == "profit" and self.value is not None:
            raise Problem("by: profit takes no value (the cut-off maximises out-of-fold profit)",
                          ("value",))
        if self.by != "profit" and (self.value is None or self.value == 0):
            example = "0.05" if self.by == "max_bad_rate" else "0.6"
            raise Problem(f"by: {self.by} needs a value above 0, e.g. value: {example}", ("value",))
        return self


@dataclass(frozen=True, config=DECLARED)
class StrategySettings:
    automation_target: Fraction = 0.70
    candidate_thresholds: Whole = 200
    cutoff: CutoffRule = field(default_factory=CutoffRule)

    @model_validator(mode="after")
    def _grid(self) -> StrategySettings:
        if self.candidate_thresholds < 3:
            raise Problem(f"must be at least 3, got {self.candidate_thresholds}",
                          ("candidate_thresholds",))
        return self


@dataclass(frozen=True, config=DECLARED)
class ModelSettings:
    """Candidates, cross-validation, calibration and each estimator's parameters.

    Parameters are checked against the estimator they are for (names, and types where the
    estimator declares them): a typo is an error, not a silently ignored setting.
    """

    cv_folds: Whole = 5
    random_state: Whole = 42
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    candidates: tuple[Candidate, ...] = ("random_forest", "lightgbm")
    random_forest: Params = field(default_factory=FrozenParams)
    lightgbm: Params = field(default_factory=FrozenParams)
    hist_gradient_boosting: Params = field(default_factory=FrozenParams)
    reason_codes: Whole = 4
    notes: Text = ""
    max_quarantine_share: Fraction = 0.05

    @model_validator(mode="after")
    def _checked(self, info: ValidationInfo) -> ModelSettings:
        from finflow_core.lending.config.estimators import check_params

        if self.cv_folds < 2:
            raise Problem("must be at least 2", ("cv_folds",))
        if not self.candidates:
            raise Problem("must name at least one model", ("candidates",))
        if len(set(self.candidates)) != len(self.candidates):
            raise Problem("names a model twice", ("candidates",))
        if self.reason_codes < 1:
            raise Problem("must be at least 1: declines are owed reasons", ("reason_codes",))
        if (info.context or {}).get("check_estimators", True):  # imports scikit-learn, LightGBM
            for name in KNOWN_CANDIDATES:
                check_params(name, getattr(self, name))
        return self

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        """Each candidate's configured parameters, as plain dicts (empty ones left out)."""
        return {n: getattr(self, n).to_dict() for n in KNOWN_CANDIDATES if getattr(self, n)}


@dataclass(frozen=True, config=DECLARED)
class MonitoringSettings:
    psi_watch: Positive = 0.10
    psi_alert: Positive = 0.20
    bins: Whole = 10
    floor: Positive = 1e-4
    min_rows: Whole = 200  # fewer valid rows than this: PSI reports "insufficient data"
    confidence: Fraction = 0.95  # of the PSI bound expected from sampling alone

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringSettings:
        if not self.psi_watch < self.psi_alert:
            raise Problem("needs 0 < psi_watch < psi_alert", ())
        if self.bins < 2 or not self.floor < 0.1:
            raise Problem("needs bins >= 2 and 0 < floor < 0.1", ())
        if self.min_rows < 1:
            raise Problem("must be at least 1", ("min_rows",))
        if not 0 < self.confidence < 1:
            raise Problem(f"must be between 0 and 1 (exclusive), got {self.confidence:g}",
                          ("confidence",))
        return self


@dataclass(frozen=True, config=DECLARED)
class FourEyesSettings:
    """Lending authority: what an officer without a limit of their own may commit, and
    which decisions an amount limit applies to (a decline commits no money)."""

    default_limit: NotNegative | None = None  # None: an officer with no limit set has no cap
    outcomes: tuple[Literal["approve", "decline"], ...] = ("approve",)


@dataclass(frozen=True, config=DECLARED)
class LimitsSettings:
    """What a file may cost before any row is parsed, and when a silent load counts as dead."""

    max_file_mb: Positive = 200.0  # the app's upload limit (server.maxUploadSize)
    #: header columns allowed (0: twice the declared columns plus 50)
    max_columns: Whole = 0
    #: a load from another host with no heartbeat for this long was abandoned
    stale_load_minutes: Positive = 10.0

    def columns_allowed(self, declared: int) -> int:
        return self.max_columns or 2 * declared + 50


@dataclass(frozen=True, config=DECLARED)
class ReviewSettings:
    claim_minutes: Positive = 30.0  # a claimed case returns to the queue after this long
    sla_hours: Positive = 24.0  # a case waiting longer than this is overdue
    # an override of the model further than this (PD, as a fraction) beyond the band edge
    # needs a second officer; None: overrides need no second officer
    override_distance: Fraction | None = None
    override_watch: Fraction = 0.05  # override rates above these are flagged to managers
    override_alert: Fraction = 0.10
    four_eyes: FourEyesSettings = field(default_factory=FourEyesSettings)

    @model_validator(mode="after")
    def _rates(self) -> ReviewSettings:
        if not self.override_watch <= self.override_alert:
            raise Problem("needs override_watch <= override_alert", ("override_watch",))
        return self


@dataclass(frozen=True, config=DECLARED)
class LettersSettings:
    """Adverse-action (decline) notices: the template, as written (relative paths resolve
    against FINFLOW_HOME); None: the template shipped with FinFlow."""

    template: Text | None = None


@dataclass(frozen=True, config=DECLARED)
class SecuritySettings:
    """How long a signed-in browser stays signed in."""

    session_idle_minutes: Positive = 30.0  # signed out after this long without any activity
    session_max_hours: Positive = 12.0  # and after this long in any case (sign in again)


@dataclass(frozen=True, config=DECLARED)
class DisplaySettings:
    timezone: Text = "UTC"  # an IANA zone name, e.g. Europe/Berlin

    @model_validator(mode="after")
    def _zone(self) -> DisplaySettings:
        if self.timezone == "UTC":  # always known, even without a time-zone database
            return self
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise Problem(f"unknown time zone {self.timezone!r}: use an IANA name such as "
                          "UTC or Europe/Berlin", ("timezone",)) from None
        return self


def _lines(v: Any) -> Any:
    """An address may be written as a block of text or as a list of lines."""
    if isinstance(v, str):
        return tuple(line.strip() for line in v.strip().splitlines() if line.strip())
    return v


Lines = Annotated[tuple[Text, ...], BeforeValidator(_lines)]


@dataclass(frozen=True, config=DECLARED)
class LenderInfo:
    """Who the lender is, for letters to applicants (decline notices)."""

    name: Text
    address: Lines = ()
    contact: Lines = ()


@dataclass(frozen=True, config=DECLARED)
class PathSettings:
    """Where models and data live, as written (relative paths resolve against FINFLOW_HOME)."""

    models_dir: Text = "models"
    data_dir: Text = "data"
    database_url: Text = "sqlite:///data/finflow.db"


@dataclass(frozen=True)
class Paths:
    """Resolved locations: absolute paths, and the database URL after FINFLOW_DATABASE_URL."""

    models_dir: Path
    data_dir: Path
    database_url: str


@dataclass(frozen=True, config=DECLARED)
class AuditSection:
    """``audit:``: where the installation key and the exported chain anchors live.

    Both must lie outside the data folder and the database's folder: whoever can write the
    database must not also be able to read the key or rewrite the anchors (see
    docs/SECURITY.md). ``FINFLOW_KEY_FILE`` overrides ``key_file``, ``FINFLOW_ANCHOR_DIR``
    ``anchor_dir``.
    """

    key_file: Text = ".secrets/installation.key"
    anchor_dir: Text = "anchors"


@dataclass(frozen=True)
class AuditPaths:
    """Resolved ``audit:`` locations (absolute)."""

    key_file: Path
    anchor_dir: Path
