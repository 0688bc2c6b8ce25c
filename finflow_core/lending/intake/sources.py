"""A batch from whatever the lender sends: CSV or Parquet, read by the reader it needs.

The one place that knows every reader (:mod:`~finflow_core.lending.intake.reader` for CSV,
its fast path :mod:`~finflow_core.lending.intake.plain_csv`, and
:mod:`~finflow_core.lending.intake.parquet`), so that each of them stays free of the others.
"""

from __future__ import annotations

from collections.abc import Iterator

from finflow_core.errors import InvalidInput
from finflow_core.lending.config import Config
from finflow_core.lending.intake.parquet import is_parquet, open_parquet_batch, parquet_chunks
from finflow_core.lending.intake.plain_csv import plain_chunks
from finflow_core.lending.intake.reader import BatchFile, RawChunk, Source, csv_chunks, open_batch


def open_source(
    source: Source, config: Config, *, name: str | None = None, require_target: bool = False
) -> BatchFile:
    """A CSV or Parquet batch, whichever ``source`` is (both engines accept both)."""
    if is_parquet(source):
        return open_parquet_batch(source, config, name=name, require_target=require_target)
    return open_batch(source, config, name=name, require_target=require_target)


def iter_chunks(batch: BatchFile, chunk_rows: int = 100_000) -> Iterator[RawChunk]:
    """Stream the records of a batch in chunks (blank lines are not records)."""
    if chunk_rows < 1:  # 0 yielded empty chunks for ever
        raise InvalidInput(f"chunk_rows must be 1 or more, got {chunk_rows}", field="chunk_rows")
    if batch.kind == "parquet":
        yield from parquet_chunks(batch, chunk_rows)
    elif batch.plain:
        yield from plain_chunks(batch, chunk_rows)
    else:
        yield from csv_chunks(batch, chunk_rows)
