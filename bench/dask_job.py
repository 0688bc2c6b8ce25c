"""The weekly run on a local two-worker Dask cluster beside the single process, CSV and Parquet.

    .venv/bin/python -m bench.dask_job                           # 100k and 1M, CSV and Parquet
    .venv/bin/python -m bench.dask_job --sizes 100k --formats parquet

Self-contained (its own home under ``bench/results/dask``, the demo champion trained once
as ``finflow setup --demo`` does). Each measurement runs in a fresh process through
``BatchService.run`` into a fresh copy of the SQLite store: the single process with
``LocalEngine`` (50,000-row chunks), and Dask with ``DaskEngine`` on a LocalCluster of two
single-threaded worker processes. Peak memory is the driver's own ``ru_maxrss`` and, for
Dask, the largest worker's (the workers are the driver's child processes). The Parquet
file is written with pandas' defaults: one row group for the whole file. Each Dask run's
summary (rows, bands, profit, drift) is compared with the single-process summary of the
same file. Timings depend on whatever else runs on the machine: the load average before
and after each job is recorded. Writes ``bench/results/dask/latest.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "dask"
HOME = OUT / "home"
DATA = OUT / "data"
HISTORY_ROWS = 20_000
GEN_CHUNK = 100_000
IGNORED = ("timings", "already_stored")


def parse_size(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "km" else t) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


# -- set-up (in the parent) --------------------------------------------------------------------

def _context() -> Any:
    from finflow_core.lending.config import load_config
    from finflow_core.services.context import Context
    from finflow_core.store import open_store

    config = load_config()
    return Context(config, open_store(config.paths.database_url))


def ensure_home(log: Any = print) -> None:
    """The demo champion in this job's home, trained once."""
    from finflow_core.services.demo_setup import bootstrap

    ctx = _context()
    try:
        result = bootstrap(ctx, demo=True, history_rows=HISTORY_ROWS, log=log)
        if result.model_version:
            log(f"trained {result.model_version}")
    finally:
        ctx.store.close()


def batch_file(n: int, fmt: str, seed: int = 2026) -> Path:
    """``n`` synthetic applications (no outcome column) as CSV, or as Parquet with pandas'
    defaults (one row group), written once."""
    import pandas as pd

    from finflow_core.lending.synthetic import generate_applications

    DATA.mkdir(parents=True, exist_ok=True)
    csv_path = DATA / f"batch_{label(n)}.csv"
    if not csv_path.exists():
        tmp = csv_path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            done, part = 0, 0
            while done < n:
                rows = min(GEN_CHUNK, n - done)
                df = generate_applications(rows, seed=seed * 1000 + part).drop(columns="default")
                df.to_csv(fh, index=False, header=(part == 0))
                done, part = done + rows, part + 1
        tmp.rename(csv_path)
    if fmt == "csv":
        return csv_path
    pq_path = DATA / f"batch_{label(n)}.parquet"
    if not pq_path.exists():
        frame = pd.read_csv(csv_path)  # typed as pandas reads it
        frame.to_parquet(pq_path.with_suffix(".tmp"), index=False)  # pandas' defaults
        pq_path.with_suffix(".tmp").rename(pq_path)
    return pq_path


# -- one measurement (in a fresh process) -----------------------------------------------------------

def measure(mode: str, path: Path, workers: int) -> dict[str, Any]:
    from finflow_core.pipeline.dask_cluster import local_cluster
    from finflow_core.pipeline.dask_engine import DaskEngine
    from finflow_core.pipeline.local import LocalEngine
    from finflow_core.services.access import SYSTEM
    from finflow_core.services.context import Context
    from finflow_core.services.workbench import Workbench
    from finflow_core.store import open_store

    base = _context()
    db = Path(base.config.paths.database_url.removeprefix("sqlite:///"))
    base.store.close()
    copy = OUT / "stores" / f"{mode}_{path.name}.db"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(db, copy)
    store = open_store(f"sqlite:///{copy}")
    wb = Workbench(Context(base.config, store), SYSTEM)
    cluster = client = None
    started = time.perf_counter()
    if mode == "dask":
        cluster, client = local_cluster(workers)
        engine: Any = DaskEngine(client)
    else:
        engine = LocalEngine(chunk_rows=50_000)
    cluster_start = time.perf_counter() - started
    seen: list[tuple[int, int]] = []
    summary = wb.batches.run(path, engine=engine, progress=lambda d, t: seen.append((d, t)))
    wall = time.perf_counter() - started
    if client is not None:
        client.close()
        cluster.close()
    store.close()
    copy.unlink(missing_ok=True)
    result = summary.to_dict()
    return {
        "mode": mode, "file": path.name, "rows": summary.rows_in, "wall": wall,
        "cluster_start": cluster_start, "rows_per_s": summary.rows_in / wall,
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                           if mode == "dask" else None),
        "partitions": summary.timings.get("partitions"), "first_pass": summary.timings.get("first_pass"),
        "progress_last": seen[-1] if seen else None, "progress_calls": len(seen),
        "summary": {k: v for k, v in result.items() if k not in IGNORED},
    }


def job(mode: str, size: int, fmt: str, workers: int) -> dict[str, Any]:
    """One measurement in a fresh process; its last line is the JSON result."""
    logs = OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = f"{mode}_{label(size)}_{fmt}"
    load = os.getloadavg()[0]
    print(f"[dask bench] {name} ...", flush=True)
    with open(logs / f"{name}.log", "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.dask_job", "--one", mode, "--file",
             str(batch_file(size, fmt)), "--workers", str(workers)],
            cwd=ROOT.parent, stdout=subprocess.PIPE, stderr=log, text=True, timeout=7200,
        )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"name": name, "error": f"exit {proc.returncode}; see {logs / (name + '.log')}"}
    out = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    out.update(name=name, size=label(size), format=fmt, load_before=load, load_after=os.getloadavg()[0])
    print(f"[dask bench] {name}: {out['wall']:.1f} s", flush=True)
    return out


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| run | wall s | of which cluster start s | rows/s | driver peak | worker peak | partitions "
            "| same summary as one process | load before / after |",
            "|---|---|---|---|---|---|---|---|---|"]
    local = {(r["size"], r["format"]): r for r in results if r.get("mode") == "local"}
    for r in results:
        if "error" in r:
            rows.append(f"| {r['name']} | {r['error']} | | | | | | | |")
            continue
        same = ""
        if r["mode"] == "dask" and (r["size"], r["format"]) in local:
            same = "yes" if r["summary"] == local[(r["size"], r["format"])]["summary"] else "**no**"
        worker = f"{r['worker_peak_mb']:,.0f} MB" if r["worker_peak_mb"] else ""
        what = "single process" if r["mode"] == "local" else "Dask, 2 workers"
        start = f"{r['cluster_start']:.1f}" if r["mode"] == "dask" else ""
        rows.append(f"| {r['size']} {r['format']}, {what} | {r['wall']:.1f} | {start} | {r['rows_per_s']:,.0f} | "
                    f"{r['driver_peak_mb']:,.0f} MB | {worker} | {r['partitions'] or ''} | {same} | "
                    f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.dask_job", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k,1M")
    ap.add_argument("--formats", default="csv,parquet")
    ap.add_argument("--modes", default="local,dask")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--one", choices=("local", "dask"), help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        result = measure(args.one, args.file, args.workers)
        print("BENCH-RESULT " + json.dumps(result, default=float), flush=True)
        return
    ensure_home()
    results = [job(mode, parse_size(size), fmt, args.workers)
               for size in args.sizes.split(",") for fmt in args.formats.split(",")
               for mode in args.modes.split(",")]
    text = (f"# Dask beside the single process ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"{os.cpu_count()} cores, shared machine: see the load column)\n\n" + table(results) + "\n")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latest.md").write_text(text)
    (OUT / "latest.json").write_text(json.dumps(results, indent=2, default=float))
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("FINFLOW_HOME", str(HOME))  # before any config is loaded
    HOME.mkdir(parents=True, exist_ok=True)
    main()
