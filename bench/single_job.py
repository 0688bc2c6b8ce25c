"""Decision latency of one application typed in: in process, and submitted into the store.

    python -m bench.single_job [--n 200] [--submit 100]
"""

from __future__ import annotations

import argparse
import time

from bench.common import (
    config,
    emit,
    fresh_store,
    median_p95,
    peak_rss_mb,
    scoring_engine,
    workbench,
)


def records(n: int) -> list[dict]:
    """Applications as an officer types them: every field as text, blank where not given."""
    from finflow_core.lending.synthetic import generate_applications

    df = generate_applications(n, seed=777).drop(columns="default")
    blank = {"<NA>", "nan", "None"}
    return [{k: ("" if str(v) in blank else str(v)) for k, v in rec.items()} for rec in df.to_dict("records")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--submit", type=int, default=100)
    args = ap.parse_args()
    cfg = config()
    store = fresh_store("single")
    engine = scoring_engine(store)
    officer = workbench(store, "officer", name="bench-officer").applications
    recs = records(args.n + args.submit + 20)
    for r in recs[:10]:  # warm-up: imports, first-call caches
        officer.score(r, engine=engine)
    in_process, bands = [], {"low": 0, "medium": 0, "high": 0}
    for r in recs[10:10 + args.n]:
        t = time.perf_counter()
        d = officer.score(r, engine=engine)
        in_process.append(time.perf_counter() - t)
        bands[d.band] += 1
    for r in recs[10 + args.n:20 + args.n]:
        officer.submit(r, engine=engine)
    stored = []
    for r in recs[20 + args.n:20 + args.n + args.submit]:
        t = time.perf_counter()
        officer.submit(r, engine=engine)
        stored.append(time.perf_counter() - t)
    # where one in-process decision's time goes
    from finflow_core.lending.config import FINFLOW_CSV
    from finflow_core.lending.intake.validation import validate_batch
    from finflow_core.services.applications import record_csv

    parts = {"validate": [], "features+predict": [], "explain": [], "score_total": []}
    for r in recs[10:60]:
        t = time.perf_counter()
        rep = validate_batch(record_csv(r, cfg.input_columns), cfg, name="form", form=FINFLOW_CSV)
        parts["validate"].append(time.perf_counter() - t)
        t = time.perf_counter()
        m = engine.features(rep.valid)
        engine.predict(m)
        parts["features+predict"].append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.explainer.explain_matrix(m)
        parts["explain"].append(time.perf_counter() - t)
        t = time.perf_counter()
        engine.score(rep.valid, rep.row_numbers)
        parts["score_total"].append(time.perf_counter() - t)
    emit({
        "score_one": median_p95(in_process), "submit_application": median_p95(stored),
        "bands": bands, "breakdown_median": {k: median_p95(v)["median"] for k, v in parts.items()},
        "peak_rss_mb": peak_rss_mb(), "model": engine.bundle.model_name,
    })


if __name__ == "__main__":
    main()
