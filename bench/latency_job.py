"""Sign-in, the review queue and a decision while a big batch is being stored (SQLite).

    python -m bench.latency_job [--size 1M] [--pause 0.2] [--idle 15]

A batch is written in short transactions under an invisible ``loading`` state; this job
checks what that is for: people keep working during a weekly run. On a fresh copy of the
bench store it adds an officer (scrypt hash at the production cost), measures each probe
with nothing running (``idle``), then starts a weekly run of ``--size`` rows in another
process (``wb.batches.run``, exactly what `finflow weekly-run` does) and repeats the probes
until that run ends:

- **sign-in**: ``Gate.authenticate`` (a read, the scrypt check, then a write transaction:
  failed-attempt counters and an audit entry);
- **queue**: ``wb.review.queue()`` first page and its total (reads);
- **decide**: ``next_case`` + ``decide(case, "approve")`` (claim and decision: writes);
- **write_lock**: an empty write transaction (``BEGIN IMMEDIATE``; ``COMMIT``): how long a
  writer waits for SQLite's one write lock, apart from the CPU the probes above need
  (sign-in's scrypt check alone is ~0.1-0.2 s of CPU, more when the machine is busy).

Only samples taken while the batch row says ``loading`` count as "during" (the run's
start-up before the row exists, and the publish after, are reported apart). Every probe
that fails (e.g. "database is locked") is counted and its message kept. A benchmark, not a
test: nothing asserts a time; other processes on the machine change the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    batch_csv,
    context,
    emit,
    fresh_store,
    label,
    median_p95,
    parse_size,
    peak_rss_mb,
    workbench,
)

OFFICER = "olive.officer"
ADMIN = "bench.admin"
PASSWORD = "a long bench password, 2026"  # noqa: S105 - a throw-away bench store
PROBES = ("sign_in", "queue", "decide", "write_lock")


def load(db: Path, size: int) -> None:
    """The loader process: one weekly run into ``db``, its summary as the result line."""
    from finflow_core.store import open_store

    store = open_store(f"sqlite:///{db}")
    t = time.perf_counter()
    summary = workbench(store, name="bench-loader").batches.run(batch_csv(size))
    wall = time.perf_counter() - t
    store.close()
    emit({"rows": summary.rows_in, "wall": wall, "batch_id": summary.batch_id,
          "timings": summary.timings, "bands": summary.bands, "peak_rss_mb": peak_rss_mb()})


def people(store: Any) -> Any:
    """A Gate on the store, with an admin and an officer (added once)."""
    from finflow_core.services.sessions import Gate

    gate = Gate(context(store))
    if not gate.has_users():
        admin = gate.create_first_admin(ADMIN, PASSWORD)
        admin.users.add(OFFICER, PASSWORD, ["officer"])
    return gate


def loading(store: Any) -> bool:
    from sqlalchemy import select

    from finflow_core.store.lending_tables import batches

    with store.connect() as conn:
        return conn.execute(select(batches.c.id).where(batches.c.state == "loading")).first() is not None


class Probes:
    """The three probes; each sample is (seconds, error message or None, phase)."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate
        self.officer = gate.sign_in(OFFICER, PASSWORD)
        self.samples: dict[str, list[tuple[float, str | None, str]]] = {p: [] for p in PROBES}

    def sign_in(self) -> Any:
        return self.gate.authenticate(OFFICER, PASSWORD)

    def queue(self) -> Any:
        return self.officer.review.queue().total

    def decide(self) -> Any:
        case = self.officer.review.next_case()
        return None if case is None else self.officer.review.decide(case, "approve")

    def write_lock(self) -> None:
        with self.gate.store.begin():
            pass

    def once(self, phase: str) -> None:
        for name in PROBES:
            t = time.perf_counter()
            error = None
            try:
                getattr(self, name)()
            except Exception as exc:  # noqa: BLE001 - counted and reported, not fatal
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.samples[name].append((time.perf_counter() - t, error, phase))

    def stats(self, phase: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, rows in self.samples.items():
            mine = [r for r in rows if r[2] == phase]
            ok = [s for s, e, _ in mine if e is None]
            errors = [e for _, e, _ in mine if e is not None]
            out[name] = {**(median_p95(ok) if ok else {"n": 0}), "errors": len(errors),
                         "first_errors": sorted(set(errors))[:3]}
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1M")
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between probe rounds")
    ap.add_argument("--idle", type=int, default=15, help="probe rounds before the run starts")
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)  # the loader process
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = parse_size(args.size)
    if args.load:
        load(Path(args.db), n)
        return
    path = batch_csv(n)  # written before anything is timed
    store = fresh_store(f"latency_{label(n)}")
    db = Path(store.engine.url.database)
    probes = Probes(people(store))
    probes.once("warm-up")  # imports, first connections
    for _ in range(args.idle):
        probes.once("idle")
        time.sleep(args.pause)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.latency_job", "--load", "--db", str(db),
                             "--size", str(n)], cwd=ROOT.parent, stdout=subprocess.PIPE, text=True)
    seen_loading = 0.0
    while proc.poll() is None:
        during = loading(store)
        if during and not seen_loading:
            seen_loading = time.perf_counter() - started
        probes.once("during" if during else "run, not loading")  # start-up or publishing
        time.sleep(args.pause)
    out, _ = proc.communicate()
    lines = [x for x in out.splitlines() if x.startswith("BENCH-RESULT ")]
    loader = json.loads(lines[-1].removeprefix("BENCH-RESULT ")) if lines else {"error": proc.returncode}
    store.close()
    emit({
        "rows": n, "file": path.name, "loader": loader, "loader_exit": proc.returncode,
        "loading_seen_after_s": seen_loading, "pause_s": args.pause,
        "idle": probes.stats("idle"), "during": probes.stats("during"),
        "run_not_loading": probes.stats("run, not loading"),
    })


if __name__ == "__main__":
    main()
