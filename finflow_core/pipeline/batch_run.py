"""The weekly run: validate, score, route, explain and measure drift, chunk by chunk.

A batch streams through in chunks, so memory stays bounded whatever its size; results go
to a sink (the store, in one transaction) as they are made, and the drift bin counts and
totals add up across chunks into one summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from finflow_core.errors import BatchRejected
from finflow_core.lending.drift import DriftReport
from finflow_core.lending.intake.reader import BatchFile, RawChunk, iter_chunks
from finflow_core.lending.intake.validation import (
    BatchValidator,
    ChunkResult,
    ignored_column_warnings,
)
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.strategy import BANDS, HIGH, LOW, MEDIUM

Progress = Callable[[int, int], None]  # (rows done, rows expected)


@dataclass
class BatchSummary:
    """What a weekly run reports; the first keys are the documented JSON summary."""

    batch_id: str
    model_version: str
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    bands: dict[str, int]
    automation_rate: float
    expected_profit: float
    drift: dict[str, Any]
    file_name: str = ""
    sha256: str = ""
    roi: float = 0.0
    amount_requested: float = 0.0
    amount_auto_approved: float = 0.0
    issues_by_rule: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    already_stored: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchSink(Protocol):
    """Where a run's results go, chunk by chunk."""

    def write_chunk(self, chunk: ChunkResult, scored: pd.DataFrame) -> None: ...

    def finish(self, summary: BatchSummary, drift: DriftReport) -> None: ...


@dataclass
class Totals:
    """Running totals of a batch, added chunk by chunk (or partition by partition)."""

    rows_valid: int = 0
    rows_quarantined: int = 0
    bands: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANDS, 0))
    profit: float = 0.0
    requested: float = 0.0
    auto_approved: float = 0.0
    lent_expected: float = 0.0
    issues: dict[str, int] = field(default_factory=dict)

    def add(self, chunk: ChunkResult, scored: pd.DataFrame, review_good_decline: float) -> None:
        self.rows_valid += len(chunk.valid)
        self.rows_quarantined += len(chunk.quarantined)
        counts = scored["band"].value_counts()
        for b in BANDS:
            self.bands[b] += int(counts.get(b, 0))
        self.profit += float(scored["expected_profit"].sum())
        amount = scored["loan_amount"].to_numpy()
        band = scored["band"].to_numpy()
        self.requested += float(amount.sum())
        self.auto_approved += float(amount[band == LOW].sum())
        self.lent_expected += float(amount[band == LOW].sum()) + (1 - review_good_decline) * float(
            amount[band == MEDIUM].sum()
        )
        for rule, n in chunk.issues["rule"].value_counts().items():
            self.issues[str(rule)] = self.issues.get(str(rule), 0) + int(n)


def process_batch(
    batch: BatchFile,
    engine: ScoringEngine,
    sink: BatchSink,
    *,
    chunk_rows: int = 100_000,
    progress: Progress | None = None,
    chunks: Iterator[RawChunk] | None = None,
) -> BatchSummary:
    """Run a batch through the quality gate and the model into ``sink``; return its summary."""
    config = engine.config
    validator = BatchValidator(config)
    timings: dict[str, float] = {}
    drift_counts: dict[str, np.ndarray] = {}
    totals = Totals()
    expected = batch.expected_rows
    source = chunks if chunks is not None else iter_chunks(batch, chunk_rows)
    while True:
        t = time.perf_counter()
        raw = next(source, None)
        _add(timings, "read", t)
        if raw is None:
            break
        t = time.perf_counter()
        result = validator.validate(raw)
        _add(timings, "validate", t)
        scored = engine.score(result.valid, result.row_numbers, timings=timings, drift=drift_counts)
        t = time.perf_counter()
        sink.write_chunk(result, scored)
        _add(timings, "store", t)
        totals.add(result, scored, config.economics.review_good_decline)
        if progress is not None:
            done = totals.rows_valid + totals.rows_quarantined
            progress(done, max(expected, done))
    return finish_batch(batch, engine, sink, totals, drift_counts, timings)


def finish_batch(
    batch: BatchFile, engine: ScoringEngine, sink: BatchSink, totals: Totals,
    drift_counts: dict[str, np.ndarray], timings: dict[str, float],
) -> BatchSummary:
    """Turn a batch's totals and drift counts into its summary, and close the sink with it."""
    rows_in = totals.rows_valid + totals.rows_quarantined
    if rows_in == 0:
        raise BatchRejected(f"{batch.name}: the file has a header but no applications", reason="no_rows")
    if not drift_counts:  # every row quarantined: nothing to compare
        drift_counts = {k: np.zeros(s.n_bins, dtype=np.int64) for k, s in engine.bundle.baseline.specs.items()}
    t = time.perf_counter()
    drift = engine.bundle.baseline.report(drift_counts)
    _add(timings, "drift", t)
    n_valid = max(totals.rows_valid, 1)
    summary = BatchSummary(
        batch_id=batch.batch_id,
        model_version=engine.bundle.version,
        rows_in=rows_in,
        rows_valid=totals.rows_valid,
        rows_quarantined=totals.rows_quarantined,
        bands=dict(totals.bands),
        automation_rate=round((totals.bands[LOW] + totals.bands[HIGH]) / n_valid, 4)
        if totals.rows_valid else 0.0,
        expected_profit=round(totals.profit, 2),
        drift=drift.summary(),
        file_name=batch.name,
        sha256=batch.sha256,
        roi=round(totals.profit / totals.lent_expected, 4) if totals.lent_expected else 0.0,
        amount_requested=round(totals.requested, 2),
        amount_auto_approved=round(totals.auto_approved, 2),
        issues_by_rule=totals.issues,
        warnings=ignored_column_warnings(batch),
    )
    t = time.perf_counter()
    sink.finish(summary, drift)
    _add(timings, "store", t)
    summary.timings = {k: round(v, 4) for k, v in timings.items()}
    return summary


def _add(timings: dict[str, float], stage: str, started: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started
