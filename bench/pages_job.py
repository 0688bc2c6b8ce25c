"""The portfolio summary and the review queue's first page over a million stored applications.

    python -m bench.pages_job [--rows 1M] [--store PATH] [--runs 7]

Uses the store the 1M weekly-run benchmark left behind (real decisions, reasons and
roll-ups) when it exists; otherwise fills a store through the core's own write path
(``StoreSink``: applications, scores, automatic decisions and the roll-ups, one published
batch per 100k applications) with synthetic applications and model-free scores, so
it needs no model time. Either way ``rollup.check_rollups`` confirms the roll-ups agree
with the applications before anything is timed.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    STORES,
    Timer,
    config,
    emit,
    fresh_store,
    label,
    median_p95,
    parse_size,
    peak_rss_mb,
    scoring_engine,
    workbench,
)

FILL_BATCH = 100_000


def fill(n: int, tag: str) -> Path:
    """``n`` applications in batches of 100k, written by StoreSink with synthetic scores."""
    from datetime import UTC, datetime

    from finflow_core.lending.intake.reader import BatchFile, open_batch
    from finflow_core.lending.intake.sources import iter_chunks
    from finflow_core.lending.intake.validation import ISSUE_COLUMNS, BatchValidator, ChunkResult
    from finflow_core.lending.strategy import BAND_DECISION, HIGH, LOW, MEDIUM, assign_bands
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.pipeline.run import BatchSummary
    from finflow_core.store.batch_writer import StoreSink

    cfg = config()
    store = fresh_store(tag)
    engine = scoring_engine(store, explain=False)
    s = engine.strategy
    rng = np.random.default_rng(0)
    features = [f for f in engine.bundle.feature_names if f not in engine.bundle.categorical][:6]
    done, k = 0, 0
    while done < n:
        rows = min(FILL_BATCH, n - done)
        df = generate_applications(rows, seed=9000 + k, start=pd.Timestamp("2026-01-05").date()
                                   + pd.Timedelta(weeks=k).to_pytimedelta(), days=7).drop(columns="default")
        # typed by the core's own quality gate (one chunk), as a weekly run would
        raw_chunk = next(iter_chunks(open_batch(df.to_csv(index=False).encode(), cfg), rows + 1))
        result = BatchValidator(cfg).validate(raw_chunk)
        valid, raw = result.valid, result.valid_raw
        rows = len(valid)
        p = np.clip(rng.beta(1.2, 9.0, rows), 1e-4, 1 - 1e-4)
        bands = assign_bands(p, s.low_edge, s.high_edge)
        amount = valid[cfg.amount_column].to_numpy(float)
        ev_a, ev_r = amount * (0.08 - p), amount * (0.05 - p) - 120
        reasons = [[{"feature": f, "text": f"{f} is high ({i})", "value": 1.0, "contribution": 0.1 / (j + 1)}
                    for j, f in enumerate(features[:4])] if b in (MEDIUM, HIGH) else [] for i, b in enumerate(bands)]
        scored = pd.DataFrame({
            "row_number": result.row_numbers, "application_id": raw[cfg.id_column].astype(str).to_numpy(),
            "probability": p, "band": bands, "decision": [BAND_DECISION[b] for b in bands],
            "expected_profit": np.where(bands == LOW, ev_a, np.where(bands == MEDIUM, ev_r, 0.0)),
            "ev_approve": ev_a, "ev_review": ev_r, "loan_amount": amount, "reasons": reasons,
        })
        chunk = ChunkResult(valid, result.row_numbers, pd.DataFrame(columns=["row_number", "line", "reasons"]),
                            pd.DataFrame(columns=ISSUE_COLUMNS), raw)
        batch = BatchFile(f"fill_{k}.csv", hashlib.sha256(f"fill-{n}-{k}".encode()).hexdigest(), 0, tuple(raw.columns), tuple(raw.columns), (), b"")
        sink = StoreSink(store, batch, engine, "bench-fill", datetime.now(UTC))
        sink.write_chunk(chunk, scored)
        counts = {b: int((bands == b).sum()) for b in (LOW, MEDIUM, HIGH)}
        drift = engine.bundle.baseline.report(
            {name: np.ones(spec.n_bins, dtype=np.int64) for name, spec in engine.bundle.baseline.specs.items()})
        sink.finish(BatchSummary(sink.batch_id, engine.bundle.version, rows, rows, 0, counts,
                                 (counts[LOW] + counts[HIGH]) / rows, float(scored["expected_profit"].sum()),
                                 drift.summary(), batch.name, batch.sha256), drift)
        done, k = done + rows, k + 1
        print(f"  filled {done:,} / {n:,}", flush=True)
    url = str(store.url).removeprefix("sqlite:///")
    store.close()
    return Path(url)


def main() -> None:
    from sqlalchemy import func, select

    from finflow_core.store import open_store
    from finflow_core.store.lending_tables import applications
    from finflow_core.store.rollup import check_rollups

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1M")
    ap.add_argument("--store", help="a store to time (default: the 1M weekly-run store, else a fill)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    n = parse_size(args.rows)
    timer = Timer()
    path = Path(args.store) if args.store else STORES / f"weekly_{label(n)}.db"
    source = "weekly-run store"
    if not path.exists() or path.stat().st_size == 0:
        path, source = fill(n, f"pages_{label(n)}"), "StoreSink fill (synthetic scores)"
    fill_seconds = timer.lap()
    store = open_store(f"sqlite:///{path}")
    with store.connect() as conn:
        total = conn.execute(select(func.count()).select_from(applications)).scalar_one()
        t = time.perf_counter()
        problems = check_rollups(conn)
        check_seconds = time.perf_counter() - t
    wb = workbench(store, "manager", "officer", name="bench-manager")

    def timed(fn) -> dict:
        fn()  # first call: connection, statement compile
        samples = []
        for _ in range(args.runs):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return median_p95(samples)

    def portfolio_page(segment=None):
        s = wb.portfolio.summary(segment=segment)
        s.kpis(), s.weekly()
        if segment:
            s.by("segment", "band")
        return s

    pending = wb.review.queue(limit=50).total
    result = {
        "store": str(path), "source": source, "applications": int(total), "pending": int(pending),
        "rollups_consistent": not problems, "rollup_problems": problems[:5],
        "check_rollups_seconds": check_seconds, "prepare_seconds": fill_seconds,
        "portfolio_summary": timed(lambda: portfolio_page()),
        "portfolio_summary_by_industry": timed(lambda: portfolio_page("industry")),
        "review_queue_oldest": timed(lambda: wb.review.queue(limit=50, order="oldest")),
        "review_queue_largest": timed(lambda: wb.review.queue(limit=50, order="amount")),
        "peak_rss_mb": peak_rss_mb(),
    }
    store.close()
    emit(result)


if __name__ == "__main__":
    main()
