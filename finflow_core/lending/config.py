"""FinFlow configuration: the declared shape of a lender's data and business.

Everything dataset-specific (columns, ratios, economics, thresholds, paths) is read from
one YAML file so a lender with other columns needs a config, not a code change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

from finflow_core.errors import ConfigError

ColumnType = Literal["string", "integer", "float", "category", "date"]
Role = Literal[
    "id", "feature", "target", "loan_amount", "interest_rate", "term", "income", "date", "info"
]
COLUMN_TYPES: tuple[str, ...] = ("string", "integer", "float", "category", "date")
ROLES: tuple[str, ...] = (
    "id", "feature", "target", "loan_amount", "interest_rate", "term", "income", "date", "info"
)
#: Roles a dataset must have exactly one column for.
REQUIRED_ROLES: tuple[str, ...] = ("id", "target", "loan_amount", "interest_rate", "term")
#: Longest application id the store keeps (longer ones are quarantined, never cut).
ID_MAX_LENGTH = 128
KNOWN_CANDIDATES: tuple[str, ...] = ("random_forest", "lightgbm", "hist_gradient_boosting")
#: Roles whose columns feed the model unless ``model_input: false``.
MODEL_ROLES: tuple[str, ...] = ("feature", "loan_amount", "interest_rate", "term", "income")

ENV_CONFIG = "FINFLOW_CONFIG"
ENV_HOME = "FINFLOW_HOME"
ENV_DATABASE_URL = "FINFLOW_DATABASE_URL"


@dataclass(frozen=True)
class ColumnSpec:
    """One declared input column."""

    name: str
    type: ColumnType
    role: Role = "feature"
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    max_length: int | None = None
    label: str = ""
    model_input: bool = True
    reason_high: str | None = None
    reason_low: str | None = None
    reason_category: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def is_numeric(self) -> bool:
        return self.type in ("integer", "float")

    @property
    def is_model_input(self) -> bool:
        return self.role in MODEL_ROLES and self.model_input


@dataclass(frozen=True)
class RatioSpec:
    """An engineered feature: sum(numerator) / sum(denominator)."""

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    label: str = ""
    reason_high: str | None = None
    reason_low: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Economics:
    loss_given_default: float = 0.45
    cost_of_funds: float = 0.04
    review_cost: float = 120.0
    review_default_detection: float = 0.5
    review_good_decline: float = 0.1
    currency: str = "USD"


@dataclass(frozen=True)
class StrategySettings:
    automation_target: float = 0.70
    candidate_thresholds: int = 200


@dataclass(frozen=True)
class ModelSettings:
    cv_folds: int = 5
    random_state: int = 42
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto"
    candidates: tuple[str, ...] = ("random_forest", "lightgbm")
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason_codes: int = 4
    notes: str = ""


@dataclass(frozen=True)
class MonitoringSettings:
    psi_watch: float = 0.10
    psi_alert: float = 0.20
    bins: int = 10
    floor: float = 1e-4


@dataclass(frozen=True)
class ReviewSettings:
    claim_minutes: float = 30.0


@dataclass(frozen=True)
class Paths:
    models_dir: Path
    data_dir: Path
    database_url: str


@dataclass(frozen=True)
class Config:
    """The whole FinFlow configuration; build it with :func:`load_config`."""

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
    def rate_column(self) -> str:
        return self._required_role("interest_rate")

    @property
    def term_column(self) -> str:
        return self._required_role("term")

    @property
    def date_column(self) -> str | None:
        return self.role_column("date")

    def _required_role(self, role: str) -> str:
        name = self.role_column(role)
        if name is None:  # guarded by validation in load_config
            raise ConfigError(f"dataset has no column with role {role!r}", key="dataset.columns")
        return name

    @cached_property
    def input_columns(self) -> tuple[ColumnSpec, ...]:
        """Columns an application batch must carry (everything but the target)."""
        return tuple(c for c in self.columns if c.role != "target")

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


# -- loading --------------------------------------------------------------------------------

def default_config_path() -> Path:
    return Path(__file__).with_name("default_config.yaml")


def finflow_home() -> Path:
    return Path(os.environ.get(ENV_HOME) or os.getcwd()).resolve()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and check a config: explicit path, else ``$FINFLOW_CONFIG``, else the default."""
    chosen = path or os.environ.get(ENV_CONFIG) or default_config_path()
    p = Path(chosen)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}", key="path")
    raw_bytes = p.read_bytes()
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}", key="path") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level", key="")
    return parse_config(raw, source=str(p), sha256=hashlib.sha256(raw_bytes).hexdigest())


def parse_config(raw: dict[str, Any], *, source: str = "<dict>", sha256: str = "") -> Config:
    """Build a :class:`Config` from a plain mapping, with errors that name the key."""
    ds = _mapping(raw, "dataset")
    columns = tuple(_column(c, i) for i, c in enumerate(_list(ds, "columns", "dataset")))
    names = [c.name for c in columns]
    _check_unique(names, "dataset.columns")
    for role in REQUIRED_ROLES:
        found = [c.name for c in columns if c.role == role]
        if len(found) != 1:
            raise ConfigError(
                f"dataset needs exactly one column with role {role!r}, found {len(found)}"
                f" ({', '.join(found) or 'none'})",
                key="dataset.columns",
            )
    for role in ("date", "income"):
        if sum(c.role == role for c in columns) > 1:
            raise ConfigError(f"at most one column may have role {role!r}", key="dataset.columns")
    numeric = {c.name for c in columns if c.is_numeric}
    ratios = tuple(_ratio(r, i, numeric) for i, r in enumerate(ds.get("ratios") or []))
    _check_unique(names + [r.name for r in ratios], "dataset.ratios")
    segments = tuple(str(s) for s in ds.get("segments") or [])
    if len(segments) > 3:
        raise ConfigError("at most three segment columns are supported", key="dataset.segments")
    for s in segments:
        if s not in names or columns[names.index(s)].type not in ("category", "string"):
            raise ConfigError(
                f"segment {s!r} must be a category or string column of the dataset",
                key="dataset.segments",
            )
    if not any(c.is_model_input for c in columns):
        raise ConfigError("dataset declares no model features", key="dataset.columns")

    eco = _section(Economics, raw.get("economics") or {}, "economics")
    _check_fraction(eco.loss_given_default, "economics.loss_given_default")
    _check_fraction(eco.review_default_detection, "economics.review_default_detection")
    _check_fraction(eco.review_good_decline, "economics.review_good_decline")
    if eco.review_cost < 0 or eco.cost_of_funds < 0:
        raise ConfigError("costs cannot be negative", key="economics")
    strat = _section(StrategySettings, raw.get("strategy") or {}, "strategy")
    _check_fraction(strat.automation_target, "strategy.automation_target")

    model_raw = dict(raw.get("model") or {})
    known = ("cv_folds", "random_state", "calibration", "candidates", "reason_codes", "notes")
    params = {k: dict(v) for k, v in model_raw.items() if k not in known and isinstance(v, dict)}
    unknown = [k for k, v in model_raw.items() if k not in known and not isinstance(v, dict)]
    if unknown:
        raise ConfigError(f"unknown model settings: {', '.join(unknown)}", key="model")
    candidates = model_raw.get("candidates", ["random_forest", "lightgbm"])
    if not isinstance(candidates, list | tuple) or not all(isinstance(c, str) for c in candidates):
        raise ConfigError("model.candidates must be a list of model names", key="model.candidates")
    unknown_models = [c for c in candidates if c not in KNOWN_CANDIDATES]
    if unknown_models:
        raise ConfigError(
            f"unknown model candidate(s) {', '.join(unknown_models)}: choose from "
            f"{', '.join(KNOWN_CANDIDATES)}", key="model.candidates",
        )
    model = ModelSettings(
        cv_folds=_int(model_raw, "cv_folds", 5, "model"),
        random_state=_int(model_raw, "random_state", 42, "model"),
        calibration=model_raw.get("calibration", "auto"),
        candidates=tuple(candidates),
        params=params,
        reason_codes=_int(model_raw, "reason_codes", 4, "model"),
        notes=str(model_raw.get("notes", "")),
    )
    if model.reason_codes < 1:
        raise ConfigError("model.reason_codes must be at least 1: declines are owed reasons",
                          key="model.reason_codes")
    if model.calibration not in ("auto", "isotonic", "sigmoid"):
        raise ConfigError(
            "model.calibration must be 'auto', 'isotonic' or 'sigmoid'", key="model.calibration"
        )
    if model.cv_folds < 2:
        raise ConfigError("model.cv_folds must be at least 2", key="model.cv_folds")
    if not model.candidates:
        raise ConfigError("model.candidates must name at least one model", key="model.candidates")

    mon = _section(MonitoringSettings, raw.get("monitoring") or {}, "monitoring")
    if not 0 < mon.psi_watch < mon.psi_alert:
        raise ConfigError("monitoring needs 0 < psi_watch < psi_alert", key="monitoring")
    if mon.bins < 2 or not 0 < mon.floor < 0.1:
        raise ConfigError("monitoring needs bins >= 2 and 0 < floor < 0.1", key="monitoring")
    review = _section(ReviewSettings, raw.get("review") or {}, "review")

    paths_raw = raw.get("paths") or {}
    home = finflow_home()
    url = os.environ.get(ENV_DATABASE_URL) or str(
        paths_raw.get("database_url", "sqlite:///data/finflow.db")
    )
    paths = Paths(
        models_dir=_resolve(home, paths_raw.get("models_dir", "models")),
        data_dir=_resolve(home, paths_raw.get("data_dir", "data")),
        database_url=_resolve_sqlite(home, url),
    )
    return Config(
        dataset_name=str(ds.get("name", "dataset")),
        columns=columns,
        ratios=ratios,
        segments=segments,
        economics=eco,
        strategy=strat,
        model=model,
        monitoring=mon,
        review=review,
        paths=paths,
        source=source,
        sha256=sha256,
    )


def _resolve(home: Path, value: Any) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else home / p


def _resolve_sqlite(home: Path, url: str) -> str:
    """Make a relative SQLite path absolute so every entry point uses the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(home / url[len(prefix):])
    return url


def _mapping(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"config needs a {key!r} section", key=key)
    return value


def _list(raw: dict[str, Any], key: str, parent: str) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{parent}.{key} must be a non-empty list", key=f"{parent}.{key}")
    return value


def _check_unique(names: list[str], key: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"name {n!r} is declared twice", key=key)
        seen.add(n)


def _check_fraction(value: float, key: str) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{key} must be between 0 and 1, got {value}", key=key)


_COLUMN_KEYS = {
    "name", "type", "role", "nullable", "min", "max", "categories", "max_length", "label",
    "model_input", "reason_high", "reason_low", "reason_category",
}


def _column(raw: Any, i: int) -> ColumnSpec:
    key = f"dataset.columns[{i}]"
    if not isinstance(raw, dict) or "name" not in raw or "type" not in raw:
        raise ConfigError("each column needs at least a name and a type", key=key)
    extra = set(raw) - _COLUMN_KEYS
    if extra:
        raise ConfigError(f"unknown column settings: {', '.join(sorted(extra))}", key=key)
    ctype = raw["type"]
    if ctype not in COLUMN_TYPES:
        raise ConfigError(f"type must be one of {', '.join(COLUMN_TYPES)}, got {ctype!r}", key=key)
    # text and dates are not model inputs: without a role they are kept for information
    role = raw.get("role", "info" if ctype in ("string", "date") else "feature")
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}", key=key)
    if role == "feature" and ctype in ("string", "date"):
        raise ConfigError(
            f"a {ctype} column cannot be a model feature: declare it as a category (with its "
            "categories) or a number, or give it role info", key=key,
        )
    cats = tuple(str(c) for c in raw.get("categories") or ())
    if ctype == "category" and not cats:
        raise ConfigError(f"category column {raw['name']!r} needs its categories", key=key)
    if role in ("loan_amount", "interest_rate", "term", "income", "target") and ctype not in (
        "integer", "float"
    ):
        raise ConfigError(f"a {role} column must be numeric", key=key)
    try:
        lo = None if raw.get("min") is None else float(raw["min"])
        hi = None if raw.get("max") is None else float(raw["max"])
    except (TypeError, ValueError):
        raise ConfigError("min and max must be numbers", key=key) from None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"min {lo:g} is above max {hi:g}", key=key)
    max_length = raw.get("max_length")
    if role == "id":  # the store keeps application ids of up to ID_MAX_LENGTH characters
        max_length = ID_MAX_LENGTH if max_length is None else max_length
        if not isinstance(max_length, int) or not 1 <= max_length <= ID_MAX_LENGTH:
            raise ConfigError(f"an id column's max_length must be 1 to {ID_MAX_LENGTH}", key=key)
    return ColumnSpec(
        name=str(raw["name"]),
        type=ctype,
        role=role,
        nullable=bool(raw.get("nullable", False)),
        min=lo,
        max=hi,
        categories=cats,
        max_length=max_length,
        label=str(raw.get("label", "")),
        model_input=bool(raw.get("model_input", True)),
        reason_high=raw.get("reason_high"),
        reason_low=raw.get("reason_low"),
        reason_category=raw.get("reason_category"),
    )


def _ratio(raw: Any, i: int, numeric: set[str]) -> RatioSpec:
    key = f"dataset.ratios[{i}]"
    if not isinstance(raw, dict) or not {"name", "numerator", "denominator"} <= set(raw):
        raise ConfigError("each ratio needs name, numerator and denominator", key=key)

    def cols(value: Any) -> tuple[str, ...]:
        items = (value,) if isinstance(value, str) else tuple(value)
        for c in items:
            if c not in numeric:
                raise ConfigError(f"ratio input {c!r} is not a numeric column", key=key)
        return items

    return RatioSpec(
        name=str(raw["name"]),
        numerator=cols(raw["numerator"]),
        denominator=cols(raw["denominator"]),
        label=str(raw.get("label", "")),
        reason_high=raw.get("reason_high"),
        reason_low=raw.get("reason_low"),
    )


def _int(raw: dict[str, Any], name: str, default: int, parent: str) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}", key=f"{parent}.{name}")
    return value


def _section(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{key} must be a mapping of settings", key=key)
    fields = cls.__dataclass_fields__
    extra = set(raw) - set(fields)
    if extra:
        raise ConfigError(f"unknown settings in {key}: {', '.join(sorted(extra))}", key=key)
    try:
        values = {k: type(getattr(cls(), k))(v) for k, v in raw.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value in {key}: {exc}", key=key) from exc
    return cls(**values)
