"""FinFlow configuration: the declared shape of a lender's data and business.

Everything dataset-specific (columns, ratios, pricing, economics, thresholds, paths) is
read from one YAML file, so a lender with other columns needs a config, not a code change.

* ``columns``, ``settings``, ``schema``: the declaration (pydantic, unknown keys refused,
  strict types) and the rules that tie sections together;
* ``estimators``: model parameters checked against the estimators themselves;
* ``yaml12``, ``loader``, ``messages``: reading the file (YAML 1.2), the environment and
  paths, and one-line errors naming the key as written.
"""

from finflow_core.lending.config.columns import (
    COLUMN_TYPES,
    ID_MAX_LENGTH,
    MODEL_ROLES,
    PROTECTED_HINTS,
    REQUIRED_ROLES,
    ROLES,
    SINGLE_ROLES,
    UNKNOWN_POLICIES,
    ColumnSpec,
    ColumnType,
    RatioSpec,
    Role,
    UnknownPolicy,
    protected_hint,
)
from finflow_core.lending.config.csv_form import DELIMITERS, FINFLOW_CSV, CsvForm
from finflow_core.lending.config.fields import FrozenParams
from finflow_core.lending.config.loader import (
    ENV_ANCHOR_DIR,
    ENV_CONFIG,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_KEY_FILE,
    default_config_path,
    finflow_home,
    load_config,
    parse_config,
    read_yaml,
    resolve_audit,
    resolve_paths,
)
from finflow_core.lending.config.outcome_file import OutcomeSpec
from finflow_core.lending.config.schema import Config, DatasetSection, Document
from finflow_core.lending.config.settings import (
    CUTOFF_METHODS,
    KNOWN_CANDIDATES,
    AuditPaths,
    AuditSection,
    CutoffRule,
    DisplaySettings,
    Economics,
    FourEyesSettings,
    LenderInfo,
    LettersSettings,
    LimitsSettings,
    ModelSettings,
    MonitoringSettings,
    Paths,
    PathSettings,
    Pricing,
    PricingSection,
    RateByBand,
    ReviewSettings,
    StrategySettings,
)
from finflow_core.lending.config.yaml12 import load_yaml

__all__ = [
    "DELIMITERS", "FINFLOW_CSV", "CsvForm",
    "COLUMN_TYPES", "CUTOFF_METHODS", "ENV_ANCHOR_DIR", "ENV_CONFIG", "ENV_DATABASE_URL",
    "ENV_HOME", "ENV_KEY_FILE", "AuditPaths", "AuditSection",
    "ID_MAX_LENGTH", "KNOWN_CANDIDATES", "MODEL_ROLES", "PROTECTED_HINTS", "REQUIRED_ROLES",
    "ROLES", "SINGLE_ROLES", "UNKNOWN_POLICIES", "ColumnSpec", "ColumnType", "Config",
    "CutoffRule", "DatasetSection", "DisplaySettings", "Document", "Economics",
    "FourEyesSettings", "FrozenParams", "LenderInfo", "LettersSettings", "LimitsSettings", "ModelSettings",
    "MonitoringSettings", "OutcomeSpec", "PathSettings", "Paths", "Pricing",
    "PricingSection", "RateByBand", "RatioSpec", "ReviewSettings", "Role", "StrategySettings",
    "UnknownPolicy", "default_config_path", "finflow_home", "load_config", "load_yaml",
    "parse_config", "protected_hint", "read_yaml", "resolve_audit", "resolve_paths",
]
