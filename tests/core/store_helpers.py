"""Helpers of the store tests (``tests/core/store/``, ``tests/core/services/``...): the session config and model,
batch files, and :class:`Lending`, one test's installation.

Training is the slow part, so ONE small model is trained per session (through
``train_and_register``, into a session models folder) and every test's fresh database just
``register``s that saved folder (see ``make_lending``); migrating, registering and storing
batch a are done once per backend into a template that each test copies (``cloned_lending``).
Each test gets its own ``FINFLOW_HOME`` with the session config, the session key and its own
database (``FINFLOW_DATABASE_URL``), so the CLI run in process sees exactly what the test sees.
The fixtures themselves are in ``store_fixtures`` (loaded as a plugin by each module).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import make_url

from finflow_core.lending.config import Config, default_config_path, load_config
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.synthetic import generate_applications
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.run import BatchSummary
from finflow_core.security import passwords
from finflow_core.services.access import SYSTEM, Principal
from finflow_core.services.context import Context
from finflow_core.services.scoring_engines import champion_engine
from finflow_core.services.sessions import Gate
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.batch_queries import batch_ids
from finflow_core.store.lending_tables import applications, quarantine_rows
from finflow_core.store.migrate import load_all_tables
from finflow_core.store.model_files import load_bundle

SECRET_KEY = "store-tests-installation-key-0123456789"
TRAIN_ROWS = 3000
BATCH_ROWS = 600
PASSWORD = "a long enough test password"

#: Every table a stored batch writes to (what a failed run must leave empty).
LENDING_TABLES = (
    "batches", "applications", "scores", "decisions", "quarantine_rows", "quarantine_issues",
    "drift_runs", "portfolio_rollup", "probability_rollup",
)

ANALYST = Principal(None, "ann.analyst", frozenset({"analyst"}))
OFFICER = Principal(None, "oscar.officer", frozenset({"officer"}))
MANAGER = Principal(None, "mia.manager", frozenset({"manager"}))
ADMIN = Principal(None, "ada.admin", frozenset({"admin"}))


# -- the session config and model -------------------------------------------------------------

def small_config_raw() -> dict[str, Any]:
    """The shipped config with small, fast models; paths relative to FINFLOW_HOME."""
    raw = yaml.safe_load(default_config_path().read_text())
    raw["model"]["random_forest"] = {**raw["model"]["random_forest"], "n_estimators": 30}
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "n_estimators": 60}
    raw["model"]["cv_folds"] = 3
    raw["paths"] = {"models_dir": "models", "data_dir": "data",
                    "database_url": "sqlite:///data/finflow.db"}
    return raw


#: Session-wide values: the scoring engine, the database templates (not fixtures), and what
#: the session fixtures make (so a module that imports them by name still trains only once).
_ONCE: dict[str, Any] = {}


def once(key: str, make: Callable[[], Any]) -> Any:
    if key not in _ONCE:
        _ONCE[key] = make()
    return _ONCE[key]


@dataclass(frozen=True)
class TrainedModel:
    folder: Path
    version: str
    history: Path  # the labelled training file


def train_session_model(store_session_dir: Path, config_path: Path) -> TrainedModel:
    home = store_session_dir / "train_home"
    home.mkdir()
    history = home / "history.csv"
    generate_applications(TRAIN_ROWS, seed=11).to_csv(history, index=False)
    with pytest.MonkeyPatch.context() as mp:
        _set_env(mp, home, config_path, f"sqlite:///{home / 'train.db'}")
        config = load_config()
        with open_store(config.paths.database_url) as store:
            outcome = Workbench(Context(config, store), SYSTEM).models.train(history)
        folder = config.paths.models_dir / outcome.version
    assert outcome.became_champion and folder.is_dir()
    return TrainedModel(folder, outcome.version, history)


def _set_env(mp: pytest.MonkeyPatch, home: Path, config_path: Path, url: str) -> None:
    mp.setenv("FINFLOW_HOME", str(home))
    mp.setenv("FINFLOW_CONFIG", str(config_path))
    mp.setenv("FINFLOW_SECRET_KEY", SECRET_KEY)
    mp.setenv("FINFLOW_DATABASE_URL", url)
    for name in ("FINFLOW_USER", "FINFLOW_PASSWORD", "FINFLOW_NEW_PASSWORD", "FINFLOW_ANCHOR_DIR"):
        mp.delenv(name, raising=False)


# -- batch files --------------------------------------------------------------------------------

def with_bad_rows(df: pd.DataFrame, every: int = 97) -> pd.DataFrame:
    """A live batch (no outcome) with some rows the quality gate must quarantine."""
    out = df.drop(columns=["default"], errors="ignore").astype(object)
    bad = list(range(5, len(out), every))
    for k, i in enumerate(bad):
        col, value = [("credit_score", "n/a"), ("loan_amount", "-5"), ("application_id", ""),
                      ("industry", "=HYPERLINK(\"x\")")][k % 4]
        out.iloc[i, out.columns.get_loc(col)] = value
    return out


@dataclass(frozen=True)
class BatchFiles:
    a: Path  # 600 rows, some quarantined
    b: Path  # another week, 600 rows
    recession: Path  # a drifted population
    not_csv: Path  # a PNG renamed .csv

    @staticmethod
    def records(path: Path) -> int:
        """Records in a file (rows after the header; our files have no embedded line breaks)."""
        return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


def write_batches(store_session_dir: Path) -> BatchFiles:
    folder = store_session_dir / "batches"
    folder.mkdir()
    a, b, rec, png = (folder / n for n in ("week_a.csv", "week_b.csv", "recession.csv", "image.csv"))
    with_bad_rows(generate_applications(BATCH_ROWS, seed=21)).to_csv(a, index=False)
    with_bad_rows(generate_applications(BATCH_ROWS, seed=22, start=pd.Timestamp("2026-01-12").date())
                  ).to_csv(b, index=False)
    generate_applications(BATCH_ROWS, seed=23, drift="recession").drop(columns="default").to_csv(
        rec, index=False)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return BatchFiles(a, b, rec, png)


# -- one test's installation --------------------------------------------------------------------

class Lending:
    """One test's FinFlow: its home, config, store (with the session model as champion)."""

    def __init__(self, home: Path, url: str, model: TrainedModel, *, register_model: bool = True) -> None:
        self.home = home
        self.url = url
        self.model = model
        self.config: Config = load_config()
        self.store: Store = open_store(url)
        self.version = model.version
        if register_model:
            bundle = load_bundle(model.folder, SECRET_KEY.encode())
            self.wb(SYSTEM).models.register(bundle, model.folder)

    @property
    def context(self) -> Context:
        return Context(self.config, self.store)

    @property
    def gate(self) -> Gate:
        return Gate(self.context)

    def wb(self, actor: Principal) -> Workbench:
        """The services as ``actor`` sees them."""
        return Workbench(self.context, actor)

    @cached_property
    def engine(self) -> ScoringEngine:
        """The champion ready to score; built once per session (it holds no per-batch state,
        and a fresh store has no saved strategy, so every test's engine would be the same)."""
        return once("engine", lambda: champion_engine(self.context))

    def run(self, path: Path | bytes, actor: Principal = ANALYST, **kw: Any) -> BatchSummary:
        kw.setdefault("scoring", self.engine)
        if "chunk_rows" in kw:
            kw["engine"] = LocalEngine(chunk_rows=kw.pop("chunk_rows"))
        return self.wb(actor).batches.run(path, **kw)

    def count(self, table: str, where: str = "") -> int:
        with self.store.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table} {where}")).scalar_one())

    def counts(self) -> dict[str, int]:
        """Rows in every table (migrations' own table excluded)."""
        return {t: self.count(t) for t in load_all_tables().tables}

    def pending_ids(self, batch_id: str | None = None) -> list[int]:
        q = select(applications.c.id).where(applications.c.status == "pending").order_by(applications.c.id)
        if batch_id is not None:
            q = q.where(applications.c.batch_id == batch_id)
        with self.store.connect() as conn:
            return list(conn.execute(q).scalars())

    def batch_ids(self) -> list[str]:
        with self.store.connect() as conn:
            return batch_ids(conn)

    def stored_rows(self, batch_id: str) -> int:
        """Applications plus quarantined rows stored for a batch."""
        with self.store.connect() as conn:
            apps = conn.execute(select(func.count()).select_from(applications)
                                .where(applications.c.batch_id == batch_id)).scalar_one()
            quar = conn.execute(select(func.count()).select_from(quarantine_rows)
                                .where(quarantine_rows.c.batch_id == batch_id)).scalar_one()
        return int(apps) + int(quar)

    def users(self) -> dict[str, Principal]:
        """Real users, one per role (admin first, created by the local bootstrap)."""
        admin = self.gate.create_first_admin("ada.admin", PASSWORD)
        made = {"admin": admin.actor}
        for role, name in (("analyst", "ann.analyst"), ("officer", "oscar.officer"),
                           ("manager", "mia.manager")):
            made[role] = admin.users.add(name, PASSWORD, [role]).principal()
        return made

    def close(self) -> None:
        self.store.close()


def make_lending(mp: pytest.MonkeyPatch, home: Path, config_path: Path, url: str,
                 model: TrainedModel) -> Lending:
    """A fresh installation: open_store migrates the empty database, the model is registered."""
    _prepare(mp, home, config_path, url)
    return Lending(home, url, model)


def _prepare(mp: pytest.MonkeyPatch, home: Path, config_path: Path, url: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    _set_env(mp, home, config_path, url)
    # cheaper password hashes in process (the smallest cost verify_password accepts); a
    # subprocess uses the real cost and simply rehashes at sign-in
    mp.setattr(passwords, "SCRYPT_N", 2**10)


# Migrating and registering take a few tenths of a second per database, storing a batch
# more: each kind of starting point is built once per backend, and every test gets a copy
# (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL). The copy is exactly
# what make_lending (and a run of batch a) would have produced.

def _template(kind: str, url: str, mp: pytest.MonkeyPatch, home: Path, config_path: Path,
              model: TrainedModel, batches: BatchFiles) -> str:
    backend = make_url(url).get_backend_name()

    def build() -> str:
        if backend == "sqlite":
            path = _ONCE["dir"] / "templates" / f"{kind}.db"
            for leftover in path.parent.glob(path.name + "*"):  # from a failed attempt
                leftover.unlink()
            target = f"sqlite:///{path}"
        else:
            target = _pg_create(url, f"template_{kind}_{os.getpid()}")
        lending = make_lending(mp, home / f"template_{kind}", config_path, target, model)
        if kind == "batch_a":
            lending.run(batches.a)
        lending.close()  # the last connection to close checkpoints SQLite's WAL into the file
        if backend == "sqlite":
            assert not Path(str(make_url(target).database) + "-wal").exists()
        return target

    return once(f"template-{kind}-{backend}", build)


def _pg_admin(url: str) -> Any:
    import psycopg

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres",
                           autocommit=True)


def _pg_create(url: str, name: str, template: str | None = None) -> str:
    with _pg_admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"'  # type: ignore[arg-type]
                     + (f' TEMPLATE "{template}"' if template else ""))
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _clone(template: str, url: str) -> None:
    """Make the (empty) database at ``url`` a copy of ``template``."""
    if make_url(url).get_backend_name() == "sqlite":
        path = Path(make_url(url).database or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(make_url(template).database or "", path)
    else:
        _pg_create(url, make_url(url).database or "", make_url(template).database)


def cloned_lending(mp: pytest.MonkeyPatch, home: Path, config_path: Path, url: str,
                   model: TrainedModel, batches: BatchFiles, kind: str = "fresh") -> Lending:
    """A copy of the ``fresh`` (migrated, model registered) or ``batch_a`` starting point at ``url``."""
    (_ONCE["dir"] / "templates").mkdir(exist_ok=True)
    template = _template(kind, url, mp, home.parent / "templates", config_path, model, batches)
    _prepare(mp, home, config_path, url)
    _clone(template, url)
    return Lending(home, url, model, register_model=False)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'data' / 'finflow.db'}"


def raw_sql(store: Store, *statements: str) -> None:
    """Run statements as someone with direct database access (one transaction)."""
    with store.begin() as conn:
        for s in statements:
            conn.execute(text(s))


def first_decisions_per_application(conn: Connection) -> dict[int, int]:
    rows = conn.execute(text(
        "SELECT application_id, count(*) FROM decisions WHERE supersedes_id IS NULL "
        "GROUP BY application_id"
    )).all()
    return {int(a): int(n) for a, n in rows}
