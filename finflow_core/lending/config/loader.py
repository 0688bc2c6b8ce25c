"""Reading a config: which file, YAML 1.2, the environment, and where paths point.

The declaration (what a config may say) is in ``schema``, ``columns`` and ``settings``;
this module only finds the file, parses it, applies ``FINFLOW_HOME`` and
``FINFLOW_DATABASE_URL``, and turns every mistake into one :class:`ConfigError` line.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from finflow_core.errors import ConfigError
from finflow_core.lending.config.csv_form import CsvForm
from finflow_core.lending.config.messages import config_error
from finflow_core.lending.config.schema import Config, Document
from finflow_core.lending.config.settings import AuditPaths, AuditSection, Paths, PathSettings
from finflow_core.lending.config.yaml12 import DuplicateKey, load_yaml

ENV_CONFIG = "FINFLOW_CONFIG"
ENV_HOME = "FINFLOW_HOME"
ENV_DATABASE_URL = "FINFLOW_DATABASE_URL"
ENV_KEY_FILE = "FINFLOW_KEY_FILE"
ENV_ANCHOR_DIR = "FINFLOW_ANCHOR_DIR"


def default_config_path() -> Path:
    """The shipped demo config (``finflow_core/lending/default_config.yaml``)."""
    return Path(__file__).resolve().parent.parent / "default_config.yaml"


def finflow_home() -> Path:
    return Path(os.environ.get(ENV_HOME) or os.getcwd()).resolve()


def read_yaml(path: Path) -> tuple[Any, bytes]:
    """The parsed YAML (1.2 core schema) and the file's bytes; ConfigError if unreadable."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", key="path")
    raw_bytes = path.read_bytes()
    try:
        return load_yaml(raw_bytes), raw_bytes
    except DuplicateKey as exc:
        raise ConfigError(f"written twice in the same mapping of {path} (line {exc.line}): keep "
                          "one (YAML would silently use the last)", key=str(exc.key)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML{_where(exc)}", key="path") from None


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {problem}" if problem else at


def load_config(path: str | os.PathLike[str] | None = None, *,
                check_estimators: bool = True) -> Config:
    """Load and check a config: explicit path, else ``$FINFLOW_CONFIG``, else the default.

    ``check_estimators=False`` skips checking model parameters against scikit-learn and
    LightGBM (importing them costs about a second), for commands that never train.
    """
    p = Path(path or os.environ.get(ENV_CONFIG) or default_config_path())
    raw, raw_bytes = read_yaml(p)
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level", key="")
    return parse_config(raw, source=str(p), sha256=hashlib.sha256(raw_bytes).hexdigest(),
                        check_estimators=check_estimators)


def parse_config(raw: dict[str, Any], *, source: str = "<dict>", sha256: str = "",
                 check_estimators: bool = True) -> Config:
    """Build a :class:`Config` from a plain mapping; every mistake is one ConfigError line."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of sections", key="")
    if not isinstance(raw.get("dataset"), dict):
        raise ConfigError("config needs a 'dataset' section (a mapping with its columns)",
                          key="dataset")
    try:
        doc = Document.model_validate(raw, context={"check_estimators": check_estimators})
    except ValidationError as exc:
        raise config_error(exc, raw) from None
    ds = doc.dataset
    paths = resolve_paths(doc.paths)
    return Config(
        dataset_name=ds.name,
        csv=CsvForm(ds.encoding, ds.delimiter),
        columns=ds.columns,
        ratios=ds.ratios,
        segments=ds.segments,
        economics=doc.economics,
        strategy=doc.strategy,
        model=doc.model,
        monitoring=doc.monitoring,
        review=doc.review,
        paths=paths,
        source=source,
        sha256=sha256,
        pricing=doc.pricing_plan,
        display=doc.display,
        security=doc.security,
        lender=doc.lender,
        letters=doc.letters,
        outcomes=doc.outcomes,
        warnings=doc.warnings(),
        limits=doc.limits,
        audit=resolve_audit(doc.audit, paths),
    )


def resolve_paths(declared: PathSettings, home: Path | None = None) -> Paths:
    """Absolute paths against ``FINFLOW_HOME``; ``FINFLOW_DATABASE_URL`` wins over the file."""
    home = home or finflow_home()
    url = os.environ.get(ENV_DATABASE_URL) or declared.database_url
    return Paths(
        models_dir=_resolve(home, declared.models_dir),
        data_dir=_resolve(home, declared.data_dir),
        database_url=_resolve_sqlite(home, url),
    )


def resolve_audit(declared: AuditSection, paths: Paths, home: Path | None = None) -> AuditPaths:
    """The key file and the anchor folder (``FINFLOW_KEY_FILE`` / ``FINFLOW_ANCHOR_DIR`` win),
    refused inside the data folder or beside a SQLite file: whoever writes (or copies) the
    database must not reach them."""
    home = home or finflow_home()
    key_file = _resolve(home, os.environ.get(ENV_KEY_FILE) or declared.key_file)
    anchor_dir = _resolve(home, os.environ.get(ENV_ANCHOR_DIR) or declared.anchor_dir)
    data = paths.data_dir.resolve()
    prefix = "sqlite:///"
    db_folder = None
    if paths.database_url.startswith(prefix) and ":memory:" not in paths.database_url:
        db_folder = Path(paths.database_url[len(prefix):]).resolve().parent
    for key, place, folder in (("audit.key_file", key_file, key_file.parent),
                               ("audit.anchor_dir", anchor_dir, anchor_dir)):
        where = place.resolve()
        if where == data or data in where.parents or folder.resolve() == db_folder:
            raise ConfigError(f"{place} lies in the database's folder: put it where whoever "
                              "writes or copies the database cannot reach it (docs/SECURITY.md)",
                              key=key)
    return AuditPaths(key_file=key_file, anchor_dir=anchor_dir)


def _resolve(home: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else home / p


def _resolve_sqlite(home: Path, url: str) -> str:
    """Make a relative SQLite path absolute so every entry point uses the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(home / url[len(prefix):])
    return url
