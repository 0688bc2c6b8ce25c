"""Shared by the benchmark jobs: the bench home (model, stores), batch files, result output."""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
# FINFLOW_BENCH_HOME measures another model set-up (with FINFLOW_CONFIG) in its own home
HOME = Path(os.environ.get("FINFLOW_BENCH_HOME") or RESULTS / "home").resolve()
DATA = RESULTS / "data"
STORES = RESULTS / "stores"
LOGS = RESULTS / "logs"
HISTORY_ROWS = 20_000  # the demo model: `finflow setup --demo` (random forest vs LightGBM)
GEN_CHUNK = 100_000

os.environ["FINFLOW_HOME"] = str(HOME)  # before any config is loaded


def parse_size(text: str) -> int:
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "km" else t) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def config() -> Any:
    from finflow_core.lending.config import load_config

    return load_config()


def base_db() -> Path:
    return HOME / "data" / "finflow.db"


def champion(store: Any) -> str | None:
    from finflow_core.store import registry

    with store.connect() as conn:
        return registry.champion_version(conn)


def context(store: Any) -> Any:
    """The services' view of the bench installation."""
    from finflow_core.services.context import Context

    return Context(config(), store)


def workbench(store: Any, *roles: str, name: str = "bench") -> Any:
    """The services as a bench user holding ``roles`` (default: analyst)."""
    from finflow_core.services.access import Principal
    from finflow_core.services.workbench import Workbench

    actor = Principal(user_id=None, username=name, roles=frozenset(roles or ("analyst",)))
    return Workbench(context(store), actor)


def scoring_engine(store: Any, *, explain: bool = True) -> Any:
    """The champion with its active strategy (what a weekly run scores with)."""
    from finflow_core.services.scoring_engines import champion_engine

    return champion_engine(context(store), explain=explain)


def ensure_model(log: Any = print) -> str:
    """Train and register the demo champion in the bench home once (as `finflow setup --demo`)."""
    from finflow_core.services.demo_setup import bootstrap
    from finflow_core.store import open_store

    cfg = config()
    with open_store(cfg.paths.database_url) as store:
        version = champion(store)
        if version is None:
            log(f"training the demo model on {HISTORY_ROWS:,} rows (once; about 2 minutes)...")
            bootstrap(context(store), demo=True, history_rows=HISTORY_ROWS, log=log)
            version = champion(store)
    return str(version)


def fresh_store(tag: str) -> Any:
    """A copy of the bench home's store (model registered, three sample batches) for one run."""
    from finflow_core.store import open_store

    STORES.mkdir(parents=True, exist_ok=True)
    target = STORES / f"{tag}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    src, dst = sqlite3.connect(base_db()), sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return open_store(f"sqlite:///{target}")


_PG: Any = None  # this process's throw-away PostgreSQL cluster


def pg_store(tag: str) -> Any:
    """A fresh PostgreSQL store with the bench champion registered (no sample batches).

    The cluster is the tests' throw-away one (``tests/pg.py``: Debian's server binaries,
    loopback, fsync off), started once per process and removed when it exits.
    """
    global _PG
    from finflow_core.services.access import SYSTEM
    from finflow_core.services.scoring_engines import load_version
    from finflow_core.services.workbench import Workbench
    from finflow_core.store import open_store, registry

    if _PG is None:
        sys.path.insert(0, str(ROOT.parent / "tests"))
        from pg import start_cluster  # the tests' helper (it skips via pytest without binaries)

        _PG = start_cluster()
    url = _PG.create_database(f"bench_{tag}_{os.getpid()}".lower())
    with open_store(f"sqlite:///{base_db()}") as home:
        version = champion(home)
        bundle = load_version(context(home), str(version))
        with home.connect() as conn:
            rec = registry.version(conn, str(version))
        folder = registry.model_folder(rec.folder, config().paths.models_dir)
    store = open_store(url)
    Workbench(context(store), SYSTEM).models.register(bundle, folder)
    return store


def open_bench_store(tag: str, backend: str = "sqlite") -> Any:
    """``fresh_store`` on SQLite, ``pg_store`` on PostgreSQL."""
    return pg_store(tag) if backend == "postgresql" else fresh_store(tag)


def batch_csv(n: int, seed: int = 2026) -> Path:
    """A weekly batch of ``n`` synthetic applications (no outcome column), written once."""
    from finflow_core.lending.synthetic import generate_applications

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"batch_{label(n)}.csv"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        done, part = 0, 0
        while done < n:
            rows = min(GEN_CHUNK, n - done)
            df = generate_applications(rows, seed=seed * 1000 + part).drop(columns="default")
            df.to_csv(fh, index=False, header=(part == 0))
            done, part = done + rows, part + 1
    tmp.rename(path)
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def median_p95(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    return {"median": statistics.median(s), "p95": p95, "min": s[0], "max": s[-1], "n": len(s)}


def emit(result: dict[str, Any]) -> None:
    """Jobs print one JSON line last; the runner reads it."""
    sys.stdout.flush()
    print("BENCH-RESULT " + json.dumps(result, default=float), flush=True)


class Timer:
    def __init__(self) -> None:
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        out, self.t = now - self.t, now
        return out
