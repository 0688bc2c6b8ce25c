"""One weekly-run measurement in a fresh process (so ru_maxrss is this size's peak).

    python -m bench.weekly_job --size 100k --mode finflow|bare|dask

finflow: ``wb.batches.run`` (``--backend postgresql``: into a throw-away PostgreSQL cluster) (chunked: validate, score, explain, drift, store each chunk in
its own short transaction under the invisible loading state, publish), then the report
export ``wb.batches.export`` (decisions/quarantine CSVs from the store), each stage timed.
bare: the bare minimum for the same model: ``pandas.read_csv``, the champion's
``predict_proba`` (features + trees + calibration), bands, and TreeSHAP for the review and
decline rows; nothing validated, worded or stored.
dask: ``wb.batches.run(engine=DaskEngine(...))`` on a LocalCluster (one single-threaded
worker per core).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

from bench.common import (
    RESULTS,
    Timer,
    batch_csv,
    children_peak_rss_mb,
    emit,
    fresh_store,
    label,
    open_bench_store,
    parse_size,
    peak_rss_mb,
    scoring_engine,
    workbench,
)

ENGINE_STAGES = ("read", "validate", "features", "predict", "explain", "drift")


def cpu_seconds() -> float:
    """This process's CPU time (user + system, all threads): less sensitive than wall time
    to other work on the machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main_thread_seconds(timings: dict[str, float]) -> float:
    """What the run's own thread spent in named stages: making parts, waiting for the store
    (with a writer thread, ``store`` overlaps the next part and is not counted), publishing."""
    made = sum(timings.get(k, 0.0) for k in ENGINE_STAGES)
    stored = timings.get("store_wait", 0.0) if "store_wait" in timings else timings.get("store", 0.0)
    return made + stored + timings.get("publish", 0.0)


def run_finflow(n: int, chunk_rows: int, backend: str = "sqlite") -> dict:
    from finflow_core.pipeline.local import LocalEngine

    path = batch_csv(n)
    store = open_bench_store(f"weekly_{label(n)}", backend)
    timer = Timer()
    engine = scoring_engine(store)
    wb = workbench(store)
    load = timer.lap()
    last = [0.0]

    def progress(done: int, total: int) -> None:  # the progress indication a user sees
        now = time.perf_counter()
        if now - last[0] > 5 or done >= total:
            print(f"  {done:,} / ~{total:,} rows ({min(done / max(total, 1), 1):.0%})", file=sys.stderr,
                  flush=True)
            last[0] = now

    timer.lap()
    cpu0 = cpu_seconds()
    summary = wb.batches.run(path, engine=LocalEngine(chunk_rows=chunk_rows), progress=progress,
                             scoring=engine)
    run = timer.lap()
    out = RESULTS / "out" / f"weekly_{label(n)}"
    wb.batches.export(summary.batch_id, out)
    report = timer.lap()
    cpu = cpu_seconds() - cpu0
    stages = {k: float(v) for k, v in summary.timings.items()}
    stages["report"] = report
    stages["other"] = run - main_thread_seconds(summary.timings)
    wall = run + report
    store.close()
    return {
        "mode": "finflow" if backend == "sqlite" else "finflow (PostgreSQL)", "rows": n, "wall": wall,
        "cpu_s": cpu, "rows_per_s": n / wall, "peak_rss_mb": peak_rss_mb(),
        "stages": stages, "load_model": load, "bands": summary.bands, "rows_valid": summary.rows_valid,
        "explained": summary.bands["medium"] + summary.bands["high"], "chunk_rows": chunk_rows,
        "model": engine.bundle.model_name, "store": str(store.url), "backend": store.dialect,
    }


def run_bare(n: int) -> dict:
    import numpy as np
    import pandas as pd
    import shap

    from finflow_core.lending.strategy import HIGH, MEDIUM, assign_bands

    path = batch_csv(n)
    store = fresh_store(f"bare_{label(n)}")
    engine = scoring_engine(store, explain=False)
    bundle, strategy = engine.bundle, engine.strategy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.TreeExplainer(bundle.model.estimator_)
    store.close()
    timer = Timer()
    cpu0 = cpu_seconds()
    df = pd.read_csv(path)
    t_read = timer.lap()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*feature names.*")
        p = bundle.model.predict_proba(df)[:, 1]
    bands = assign_bands(p, strategy.low_edge, strategy.high_edge)
    t_predict = timer.lap()
    mask = np.isin(bands, [MEDIUM, HIGH])
    matrix = bundle.model.features_.transform(df.loc[mask])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sv = explainer.shap_values(matrix, check_additivity=False)
    t_explain = timer.lap()
    cpu = cpu_seconds() - cpu0
    wall = t_read + t_predict + t_explain
    return {
        "mode": "bare", "rows": n, "wall": wall, "cpu_s": cpu, "rows_per_s": n / wall,
        "peak_rss_mb": peak_rss_mb(),
        "stages": {"read": t_read, "predict": t_predict, "explain": t_explain},
        "explained": int(mask.sum()), "shap_shape": list(np.shape(sv)), "model": bundle.model_name,
    }


def run_dask(n: int, workers: int | None) -> dict:
    from finflow_core.pipeline.dask_engine import DaskEngine

    path = batch_csv(n)
    store = fresh_store(f"dask_{label(n)}")
    scheduler = None
    cluster = None
    if workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        scheduler = Client(cluster)
    timer = Timer()
    summary = workbench(store).batches.run(path, engine=DaskEngine(scheduler))
    run = timer.lap()
    if cluster is not None:
        scheduler.close()
        cluster.close()
    store.close()
    return {
        "mode": "dask", "rows": n, "wall": run, "rows_per_s": n / run, "peak_rss_mb": peak_rss_mb(),
        "workers_peak_rss_mb": children_peak_rss_mb(), "stages": summary.timings,
        "bands": summary.bands, "explained": summary.bands["medium"] + summary.bands["high"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", required=True)
    ap.add_argument("--mode", choices=("finflow", "bare", "dask"), default="finflow")
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=0, help="dask: LocalCluster workers (0: default)")
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                    help="finflow: the store (postgresql: a throw-away local cluster, COPY)")
    args = ap.parse_args()
    n = parse_size(args.size)
    if args.mode == "finflow":
        emit(run_finflow(n, args.chunk_rows, args.backend))
    elif args.mode == "bare":
        emit(run_bare(n))
    else:
        emit(run_dask(n, args.workers or None))


if __name__ == "__main__":
    Path(RESULTS).mkdir(parents=True, exist_ok=True)
    main()
