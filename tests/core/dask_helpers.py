"""Shared by the Dask tests: small installations (a trained champion each), runs, stored results."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from finflow_core.lending.config import Config, parse_config
from finflow_core.lending.synthetic import generate_applications
from finflow_core.pipeline.run import BatchSummary
from finflow_core.services.access import SYSTEM, Principal
from finflow_core.services.context import Context
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.lending_tables import (
    applications,
    batches,
    drift_runs,
    quarantine_issues,
    quarantine_rows,
    scores,
)

ROWS = 2400
DASK = str(Path(sys.executable).with_name("dask"))


def make_home(root: Path, small_raw: dict[str, Any], *, seed: int = 11, trees: int = 60,
              history_rows: int = 3000) -> tuple[Config, Path]:
    """An installation under ``root`` with a small champion trained on seeded history; returns
    its config and the store file (copied for each run)."""
    raw = copy.deepcopy(small_raw)
    raw["model"]["random_forest"] = {**raw["model"]["random_forest"], "n_estimators": 30}
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "n_estimators": trees}
    raw["model"]["cv_folds"] = 3
    raw["paths"] = {"models_dir": str(root / "models"), "data_dir": str(root / "data"),
                    "database_url": f"sqlite:///{root / 'base.db'}"}
    config = parse_config(raw, source=f"dask-test-config-{root.name}")
    history = root / "history.csv"
    root.mkdir(parents=True, exist_ok=True)
    generate_applications(history_rows, seed=seed).to_csv(history, index=False)
    store = open_store(config.paths.database_url)
    Workbench(Context(config, store), SYSTEM).models.train(history)
    store.close()
    return config, root / "base.db"


_HOMES: dict[tuple[int, int, int], tuple[Config, Path]] = {}
_HOMES_ROOT: list[Path] = []


def shared_home(small_raw: dict[str, Any], *, seed: int = 11, trees: int = 60,
                history_rows: int = 3000) -> tuple[Config, Path]:
    """:func:`make_home`, trained once per test process for each (seed, trees, rows): the Dask
    test modules share it (every run copies the store first, so nothing leaks between them)."""
    key = (seed, trees, history_rows)
    if key not in _HOMES:
        if not _HOMES_ROOT:
            _HOMES_ROOT.append(Path(tempfile.mkdtemp(prefix="finflow-dask-homes-")))
        root = _HOMES_ROOT[0] / f"home-{seed}-{trees}-{history_rows}"
        _HOMES[key] = make_home(root, small_raw, seed=seed, trees=trees, history_rows=history_rows)
    return _HOMES[key]


def batches_stored(store: Store) -> int:
    with store.connect() as conn:
        return len(conn.execute(select(batches.c.id)).all())


def worker_pids(client: Any) -> dict[str, int]:
    """Each worker's process id (its address first)."""
    return dict(client.run(os.getpid))


def run(store: Store, path: Path, config: Config, engine: Any = None, *, who: Principal = SYSTEM,
        **kw: Any) -> BatchSummary:
    return Workbench(Context(config, store), who).batches.run(path, engine=engine, **kw)


def fresh_store(base_db: Path, folder: Path, name: str) -> Store:
    target = folder / f"{name}.db"
    shutil.copy(base_db, target)
    return open_store(f"sqlite:///{target}")


def messy_batch(rows: int = ROWS, seed: int = 5) -> bytes:
    """A batch with bad rows, duplicate ids, a misshapen row, blank lines and quoted newlines."""
    df = generate_applications(rows, seed=seed).drop(columns="default").astype(object)
    df["note"] = ""  # an ignored column holding quoted text with commas and line breaks
    ids = df["application_id"].tolist()
    df.loc[3, "credit_score"] = ""  # not_null
    df.loc[10, "industry"] = "mining"  # category
    df.loc[20, "loan_amount"] = "-5"  # in range
    df.loc[30, "region"] = "=cmd()"  # formula + category
    df.loc[40, "interest_rate"] = "abc"  # number
    df.loc[7, "note"] = 'line one\nline "two", still\nthe same cell'
    for i in range(100, rows, 97):
        df.loc[i, "note"] = f"multi\nline {i}"
    # duplicate ids: within the first partition, across partitions, of an invalid first row
    df.loc[50, "application_id"] = ids[5]
    df.loc[rows - 10, "application_id"] = ids[5]
    df.loc[rows // 2, "application_id"] = ids[3]  # first occurrence (row 4) is itself invalid
    df.loc[rows // 2 + 1, "application_id"] = ids[rows - 1]  # later row's id appears earlier
    df.loc[rows - 5, "application_id"] = ids[rows // 3]
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    lines = buf.getvalue().split("\n")
    # a misshapen row and blank lines (not records); the misshapen row's id is reused later
    misshapen_id = "APP-MISSHAPEN-1"
    lines.insert(600, f"{misshapen_id},2026-01-05,1,2")
    lines.insert(900, "")
    lines.insert(1500, "")
    text = "\n".join(lines)
    text = text.replace(ids[rows - 20] + ",", misshapen_id + ",", 1)
    return text.encode()


def stored(store: Store, batch_id: str) -> dict[str, Any]:
    with store.connect() as conn:
        apps = conn.execute(
            select(applications.c.row_number, applications.c.external_id, applications.c.probability,
                   applications.c.band, applications.c.status, applications.c.expected_profit,
                   applications.c.week_start, applications.c.segment_1, applications.c.segment_2,
                   applications.c.data, applications.c.decided_kind, scores.c.reasons,
                   scores.c.ev_approve, scores.c.ev_review)
            .join(scores, scores.c.application_id == applications.c.id)
            .where(applications.c.batch_id == batch_id).order_by(applications.c.row_number)
        ).mappings().all()
        qrows = conn.execute(
            select(quarantine_rows.c.row_number, quarantine_rows.c.line, quarantine_rows.c.external_id,
                   quarantine_rows.c.reasons, quarantine_rows.c.data)
            .where(quarantine_rows.c.batch_id == batch_id).order_by(quarantine_rows.c.row_number)
        ).all()
        issues = conn.execute(
            select(quarantine_issues.c.row_number, quarantine_issues.c.column_name,
                   quarantine_issues.c.rule, quarantine_issues.c.value, quarantine_issues.c.message)
            .where(quarantine_issues.c.batch_id == batch_id)
            .order_by(quarantine_issues.c.row_number, quarantine_issues.c.id)
        ).all()
        drift = conn.execute(select(drift_runs.c.status, drift_runs.c.score_psi, drift_runs.c.psi,
                                    drift_runs.c.counts).where(drift_runs.c.batch_id == batch_id)).one()
        batch = conn.execute(select(batches).where(batches.c.id == batch_id)).one()._asdict()
    return {"apps": [dict(a) for a in apps], "quarantine": [(*q[:4], _cells(q[4])) for q in qrows],
            "issues": [tuple(i) for i in issues], "drift": drift, "batch": batch}


def _cells(data: str) -> dict[str, Any]:
    """A quarantined row's stored cells. The core adds ``"(extra cells)": null`` to every
    quarantined row of a chunk that also holds a misshapen row, so that key depends on the
    chunking (of either run): ignore it where it is null."""
    cells = json.loads(data)
    if cells.get("(extra cells)", "") is None:
        del cells["(extra cells)"]
    return cells


def assert_same_decisions(a: list[dict[str, Any]], b: list[dict[str, Any]], *, data: bool = True) -> None:
    assert len(a) == len(b) > 0
    assert [x["row_number"] for x in a] == [x["row_number"] for x in b]
    assert [x["external_id"] for x in a] == [x["external_id"] for x in b]
    np.testing.assert_allclose([x["probability"] for x in a], [x["probability"] for x in b], rtol=0, atol=1e-9)
    np.testing.assert_allclose([x["expected_profit"] for x in a], [x["expected_profit"] for x in b],
                               rtol=0, atol=1e-6)
    for key in ("band", "status", "decided_kind", "week_start", "segment_1", "segment_2",
                *(("data",) if data else ())):
        assert [x[key] for x in a] == [x[key] for x in b], key
    for x, y in zip(a, b, strict=True):
        ra, rb = json.loads(x["reasons"]), json.loads(y["reasons"])
        assert [(r["feature"], r["text"], r["value"]) for r in ra] == \
               [(r["feature"], r["text"], r["value"]) for r in rb]
        np.testing.assert_allclose([r["contribution"] for r in ra], [r["contribution"] for r in rb],
                                   rtol=0, atol=1e-9)


class StandaloneCluster:
    """A scheduler and workers started with the `dask` command, as docs/SCALE_OUT.md says (every
    listener on loopback, no dashboard), stopped by their process ids. ``setup`` is shell run before each
    worker starts (e.g. under ``unshare --mount``: a worker with its own view of the disk)."""

    def __init__(self, folder: Path, workers: int = 2, *, cwd: str = "/", setup: str = "",
                 private_mounts: bool = False) -> None:
        self.folder = folder
        self.n = workers
        self.cwd = cwd
        self.setup = setup
        self.private_mounts = private_mounts
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def env(self) -> dict[str, str]:
        root = str(Path(__file__).resolve().parents[2])
        return {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}

    def __enter__(self) -> StandaloneCluster:
        file = self.folder / "scheduler.json"
        log = open(self.folder / "scheduler.log", "wb")  # noqa: SIM115 - closed with the process
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--dashboard-address", "127.0.0.1:0",  # its HTTP endpoint is there even without one
             "--scheduler-file", str(file)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        deadline = time.monotonic() + 60
        while not (file.exists() and file.stat().st_size):
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError((self.folder / "scheduler.log").read_text())
            time.sleep(0.2)
        self.address = json.loads(file.read_text())["address"]
        for i in range(self.n):
            self.start_worker(i)
        return self

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        cmd = (f"exec {DASK} worker {self.address} --host 127.0.0.1 --nthreads 1 --nworkers 1 "
               f"--no-dashboard --dashboard-address 127.0.0.1:0 --name w{i} --local-directory {self.folder / f'w{i}'}")
        if self.setup:
            cmd = f"{self.setup} && {cmd}"
        argv = ["sh", "-c", cmd]
        if self.private_mounts:
            argv = ["unshare", "--mount", "--propagation", "private", *argv]
        log = open(self.folder / f"worker{i}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                env=self.env(), start_new_session=True)
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int | None = None, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(n or self.n, timeout=timeout)

    def kill_workers(self) -> None:
        """SIGKILL every worker and its nanny: the machines are gone."""
        for proc in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def __exit__(self, *exc: Any) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def can_unshare() -> bool:
    """Whether workers can get a private view of the disk (root, util-linux unshare)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /mnt"], capture_output=True, check=False)
    return probe.returncode == 0
