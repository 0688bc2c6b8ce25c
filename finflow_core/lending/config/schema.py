"""The declared shape of a FinFlow config file, its cross-checks, and the :class:`Config` it gives.

:class:`Document` is the YAML file as declared: every section, its defaults and the rules
that tie sections together (roles, ratios, segments, pricing against the cut-off rule).
:class:`Config` is what the rest of FinFlow reads: the same checked parts plus resolved
paths, the pricing plan and warnings. Loading (YAML, environment, paths) is in ``loader``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.dataclasses import dataclass as declared

from finflow_core.errors import ConfigError
from finflow_core.lending.config.columns import (
    REQUIRED_ROLES,
    SINGLE_ROLES,
    ColumnSpec,
    RatioSpec,
    protected_hint,
)
from finflow_core.lending.config.csv_form import CsvForm, csv_delimiter, csv_encoding
from finflow_core.lending.config.estimators import did_you_mean
from finflow_core.lending.config.fields import DECLARED, Names, Problem, Text
from finflow_core.lending.config.outcome_file import OutcomeSpec
from finflow_core.lending.config.settings import (
    AuditPaths,
    AuditSection,
    DisplaySettings,
    Economics,
    LenderInfo,
    LettersSettings,
    LimitsSettings,
    ModelSettings,
    MonitoringSettings,
    Paths,
    PathSettings,
    Pricing,
    PricingSection,
    ReviewSettings,
    SecuritySettings,
    StrategySettings,
)

MAX_SEGMENTS = 3


@declared(frozen=True, config=DECLARED)
class DatasetSection:
    """``dataset:``: the columns of the lender's file, engineered ratios, portfolio segments."""

    columns: tuple[ColumnSpec, ...]
    name: Text = "dataset"
    ratios: tuple[RatioSpec, ...] = ()
    segments: Names = ()
    #: how the lender's CSV files are encoded: utf-8 (with or without a byte-order mark), or
    #: e.g. cp1252 for Excel's "CSV (Comma delimited)" on Windows
    encoding: Text = "utf-8"
    #: what separates their cells: "," or ";" (European exports), a tab or "|"
    delimiter: Text = ","

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSection:
        object.__setattr__(self, "encoding", csv_encoding(self.encoding))
        csv_delimiter(self.delimiter)
        if not self.columns:
            raise Problem("must be a non-empty list", ("columns",))
        names = [c.name for c in self.columns]
        _unique(names, "columns")
        for role in REQUIRED_ROLES:
            found = [c.name for c in self.columns if c.role == role]
            if len(found) != 1:
                raise Problem(f"dataset needs exactly one column with role {role!r}, found "
                              f"{len(found)} ({', '.join(found) or 'none'})", ("columns",))
        for role in SINGLE_ROLES:
            found = [c.name for c in self.columns if c.role == role]
            if len(found) > 1:
                raise Problem(f"at most one column may have role {role!r}, found "
                              f"{', '.join(found)}", ("columns",))
        by_name = {c.name: c for c in self.columns}
        for i, ratio in enumerate(self.ratios):
            _check_ratio(ratio, i, by_name)
        _unique([r.name for r in self.ratios], "ratios", taken=set(names))
        self._check_segments(by_name)
        if not any(c.is_model_input for c in self.columns):
            raise Problem("dataset declares no model features", ("columns",))
        return self

    def _check_segments(self, by_name: dict[str, ColumnSpec]) -> None:
        if len(self.segments) > MAX_SEGMENTS:
            raise Problem(f"at most {MAX_SEGMENTS} segment columns are supported", ("segments",))
        for s in self.segments:
            col = by_name.get(s)
            if col is None or col.type not in ("category", "string"):
                raise Problem(f"segment {s!r} must be a category or string column of the "
                              f"dataset{'' if col else did_you_mean(s, by_name)}", ("segments",))


def _unique(names: list[str], part: str, taken: set[str] | None = None) -> None:
    seen: set[str] = set(taken or ())
    for i, n in enumerate(names):
        if n in seen:
            raise Problem(f"name {n!r} is declared twice", (part, i))
        seen.add(n)


def _check_ratio(ratio: RatioSpec, i: int, by_name: dict[str, ColumnSpec]) -> None:
    for part in ("numerator", "denominator"):
        for j, name in enumerate(getattr(ratio, part)):
            col = by_name.get(name)
            at = ("ratios", i, part) if len(getattr(ratio, part)) == 1 else ("ratios", i, part, j)
            if col is None:
                raise Problem(f"ratio input {name!r} is not a declared column"
                              f"{did_you_mean(name, by_name)}", at)
            if col.is_protected:
                raise Problem(f"ratio input {name!r} is a protected characteristic: it never "
                              "feeds the model", at)
            if not col.is_numeric:
                raise Problem(f"ratio input {name!r} is a {col.type} column, not a numeric column",
                              at)


class Document(BaseModel):
    """The whole config file as declared; sections left out take their defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetSection
    economics: Economics = Economics()
    pricing: PricingSection = PricingSection()
    strategy: StrategySettings = StrategySettings()
    model: ModelSettings = ModelSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    review: ReviewSettings = ReviewSettings()
    display: DisplaySettings = DisplaySettings()
    security: SecuritySettings = SecuritySettings()
    lender: LenderInfo | None = None
    letters: LettersSettings = LettersSettings()
    outcomes: OutcomeSpec = OutcomeSpec()
    paths: PathSettings = PathSettings()
    limits: LimitsSettings = LimitsSettings()
    audit: AuditSection = AuditSection()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # "economics:" with nothing under it means the defaults, as it always has
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data

    @model_validator(mode="after")
    def _priced_as_declared(self) -> Document:
        plan, p = self.pricing_plan, self.pricing
        if plan.rate_column and (p.interest_rate is not None or p.rate_by_band is not None):
            key = "interest_rate" if p.interest_rate is not None else "rate_by_band"
            raise Problem(f"the file already has an interest_rate column ({plan.rate_column}): "
                          "give the rate in one place only", ("pricing", key))
        if plan.term_column and p.term_months is not None:
            raise Problem(f"the file already has a term column ({plan.term_column}): give the "
                          "term in one place only", ("pricing", "term_months"))
        if plan.priced and plan.term_column is None and plan.term_months is None:
            raise Problem("a rate needs a term: add a column with role term or "
                          "pricing: {term_months: ...}", ("pricing", "term_months"))
        if not plan.priced and p.term_months is not None:
            raise Problem("a term without a rate prices nothing: add pricing.interest_rate "
                          "(or a rate column), or remove term_months", ("pricing", "term_months"))
        if self.strategy.cutoff.by == "profit" and not plan.priced:
            raise Problem(
                "the profit-optimal cut-off needs pricing: add a column with role interest_rate, "
                "or pricing: {interest_rate: 0.12, term_months: 36} (assumed figures), or choose "
                "the cut-off by a target: {by: max_bad_rate, value: 0.05} or "
                "{by: approval_rate, value: 0.6}", ("strategy", "cutoff"))
        return self

    @property
    def pricing_plan(self) -> Pricing:
        by_role = {c.role: c.name for c in self.dataset.columns}
        p = self.pricing
        return Pricing(rate_column=by_role.get("interest_rate"), term_column=by_role.get("term"),
                       interest_rate=p.interest_rate, rate_by_band=p.rate_by_band,
                       term_months=p.term_months)

    def warnings(self) -> tuple[str, ...]:
        out = []
        for c in self.dataset.columns:
            hint = protected_hint(c.name) if c.is_model_input else None
            if hint:
                out.append(f"column {c.name!r} is a model input but its name suggests a "
                           f"protected characteristic ({hint}): if it is one, declare it "
                           "role: protected so it never feeds the model or a reason")
        return tuple(out)


@dataclass(frozen=True, eq=False)
class Config:
    """The whole FinFlow configuration; build it with ``load_config`` or ``parse_config``.

    Immutable and picklable (it travels to Dask workers); equal when every part is equal,
    and hashed once.
    """

    dataset_name: str
    columns: tuple[ColumnSpec, ...]
    ratios: tuple[RatioSpec, ...]
    segments: tuple[str, ...]
    economics: Economics
    strategy: StrategySettings
    model: ModelSettings
    monitoring: MonitoringSettings
    review: ReviewSettings
    paths: Paths
    source: str
    sha256: str
    pricing: Pricing = field(default_factory=Pricing)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    lender: LenderInfo | None = None
    warnings: tuple[str, ...] = ()
    letters: LettersSettings = field(default_factory=LettersSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    csv: CsvForm = field(default_factory=CsvForm)  # the lender's files (dataset.encoding, .delimiter)
    outcomes: OutcomeSpec = field(default_factory=OutcomeSpec)  # the lender's outcome files

    @property
    def encoding(self) -> str:
        return self.csv.encoding
    audit: AuditPaths | None = None  # None: the defaults, resolved where they are used

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(self._key())
            object.__setattr__(self, "_hash", cached)
        return cached

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Config):
            return NotImplemented
        return hash(self) == hash(other) and self._key() == other._key()

    def __getstate__(self) -> dict[str, Any]:
        # derived values are rebuilt where the config lands (hashes differ between processes)
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)

    # -- lookups -----------------------------------------------------------------------
    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def role_column(self, role: str) -> str | None:
        """Name of the column with a single-valued role (id, target, loan_amount...)."""
        for col in self.columns:
            if col.role == role:
                return col.name
        return None

    @property
    def id_column(self) -> str:
        return self._required_role("id")

    @property
    def target_column(self) -> str:
        return self._required_role("target")

    @property
    def amount_column(self) -> str:
        return self._required_role("loan_amount")

    @property
    def rate_column(self) -> str | None:
        """The file's interest-rate column; None when the rate comes from ``pricing``."""
        return self.role_column("interest_rate")

    @property
    def term_column(self) -> str | None:
        """The file's term column; None when the term comes from ``pricing``."""
        return self.role_column("term")

    @property
    def date_column(self) -> str | None:
        return self.role_column("date")

    def _required_role(self, role: str) -> str:
        name = self.role_column(role)
        if name is None:  # guarded by the declared checks
            raise ConfigError(f"dataset has no column with role {role!r}", key="dataset.columns")
        return name

    @cached_property
    def input_columns(self) -> tuple[ColumnSpec, ...]:
        """Columns an application batch must carry (everything but the target and optional columns)."""
        return tuple(c for c in self.columns if c.role != "target" and c.required)

    @cached_property
    def optional_columns(self) -> tuple[ColumnSpec, ...]:
        """Declared columns a batch may leave out (protected, ``required: false``)."""
        return tuple(c for c in self.columns if c.role != "target" and not c.required)

    @cached_property
    def batch_columns(self) -> tuple[ColumnSpec, ...]:
        """Every declared column of a batch, required or not, in declared order."""
        return tuple(c for c in self.columns if c.role != "target")

    @cached_property
    def protected_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_protected)

    @cached_property
    def base_features(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_model_input)

    @cached_property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_model_input and c.type == "category")

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """Model inputs in order: base features, then engineered ratios."""
        return self.base_features + tuple(r.name for r in self.ratios)

    @cached_property
    def numeric_features(self) -> tuple[str, ...]:
        cats = set(self.categorical_features)
        return tuple(f for f in self.feature_names if f not in cats)

    def feature_display(self, name: str) -> str:
        for r in self.ratios:
            if r.name == name:
                return r.display
        return self.column(name).display
