"""The engine of one process: a batch streams through in chunks, so memory stays bounded."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import numpy as np

from finflow_core.lending.intake.reader import BatchFile
from finflow_core.lending.intake.sources import iter_chunks
from finflow_core.lending.intake.validation import BatchValidator, ChunkResult
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.pipeline.run import Part, add_timing


class LocalEngine:
    """Reads, validates and scores a batch chunk by chunk in this process.

    Parameters
    ----------
    chunk_rows : records per chunk (bounds memory).
    validated : quality-gate results made already (an upload's preview): scored as they
        are instead of reading and validating the file a second time.
    """

    name = "local"

    def __init__(self, chunk_rows: int = 50_000, validated: Iterable[ChunkResult] | None = None) -> None:
        self.chunk_rows = chunk_rows
        self.validated = validated

    def parts(self, batch: BatchFile, scoring: ScoringEngine) -> Iterator[Part]:
        for chunk, timings in self._chunks(batch, scoring):
            drift: dict[str, np.ndarray] = {}
            scored = scoring.score(chunk.valid, chunk.row_numbers, timings=timings, drift=drift)
            yield Part(chunk, scored, drift, timings)

    def _chunks(self, batch: BatchFile, scoring: ScoringEngine) -> Iterator[tuple[ChunkResult, dict]]:
        if self.validated is not None:
            for chunk in self.validated:
                yield chunk, {}
            return
        validator = BatchValidator(scoring.config)
        raws = iter_chunks(batch, self.chunk_rows)
        while True:
            timings: dict[str, float] = {}
            t = time.perf_counter()
            raw = next(raws, None)
            add_timing(timings, "read", t)
            if raw is None:
                return
            t = time.perf_counter()
            chunk = validator.validate(raw)
            add_timing(timings, "validate", t)
            yield chunk, timings
