"""Parquet batches: the same quality gate as CSV, cell by cell as text.

A Parquet file's values are cast to text and judged exactly like the cells of a CSV file,
so a batch gives the same decisions whichever format it came in. Record ``k`` counts as
line ``k + 1`` (as if under a one-line header). Row groups are read in slices of
``chunk_rows`` records without pre-buffering whole column chunks, so a file written with one
huge row group (pandas' default) still streams in bounded memory; cells go from Arrow to
the quality gate's Arrow-backed text columns without a detour through Python objects.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finflow_core.errors import BatchRejected
from finflow_core.lending.config import Config
from finflow_core.lending.intake.file_names import display_name, require_file
from finflow_core.lending.intake.reader import (
    BLOCK,
    BatchFile,
    RawChunk,
    Source,
    check_size,
    make_chunk,
    split_columns,
)

MAGIC = b"PAR1"
SUFFIXES = (".parquet", ".pq")
STREAM_BUFFER = 1 << 20


def is_parquet(source: Source) -> bool:
    """Parquet by name or by its magic bytes."""
    if isinstance(source, bytes):
        return source[:4] == MAGIC
    path = Path(source)
    if path.name.lower().endswith(SUFFIXES):
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(4) == MAGIC


def _parquet_file(source: Source, *, streaming: bool = False) -> Any:
    """The file; ``streaming`` reads pages through a small buffer instead of pre-buffering
    every column chunk of a row group (one row group can be the whole file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = pa.BufferReader(source) if isinstance(source, bytes) else os.fspath(source)
    if streaming:
        return pq.ParquetFile(target, pre_buffer=False, buffer_size=STREAM_BUFFER)
    return pq.ParquetFile(target)


def open_parquet_batch(source: Source, config: Config, *, name: str | None = None,
                       require_target: bool = False) -> BatchFile:
    """A Parquet batch's identity (content hash) and columns, checked like a CSV header."""
    display = display_name(source, name, "upload.parquet")
    require_file(source, display)
    check_size(source, config, display)  # the same limit as a CSV, before pyarrow reads it
    try:
        pf = _parquet_file(source)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise BatchRejected(f"{display}: not a readable Parquet file ({type(exc).__name__})",
                            reason="not_parquet") from exc
    header = tuple(pf.schema_arrow.names)
    used, ignored = split_columns(header, config, display, require_target=require_target)
    rows = pf.metadata.num_rows
    sha, size = _sha256(source)
    # an absolute path (not symlink-resolved): what a cluster's workers open on shared storage
    kept: Source = source if isinstance(source, bytes) else os.path.abspath(os.fspath(source))
    return BatchFile(display, sha, size, header, used, ignored, kept, rows, kind="parquet", records=rows)


def _sha256(source: Source) -> tuple[str, int]:
    h = hashlib.sha256()
    stream = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    size = 0
    with stream:
        while block := stream.read(BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def row_group_sizes(source: Source) -> list[int]:
    meta = _parquet_file(source).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def parquet_chunks(batch: BatchFile, chunk_rows: int = 100_000, *, first_row: int = 0,
                   rows: int | None = None) -> Iterator[RawChunk]:
    """Records ``first_row`` to ``first_row + rows`` (all by default) in chunks of text cells.

    Row numbers are global to the file (1 = its first record).
    """
    done, empty = first_row, True
    for table in _slices(batch, chunk_rows, first_row, rows):
        yield _chunk(batch.header, table, done)
        done += table.num_rows
        empty = False
    if empty:
        yield make_chunk(batch.header, [], [], [], [])


def _slices(batch: BatchFile, chunk_rows: int, first_row: int, rows: int | None) -> Iterator[Any]:
    """The records of the range as Arrow record batches of at most ``chunk_rows`` records;
    only the row groups that hold the range are read, page by page."""
    pf = _parquet_file(batch.source, streaming=True)
    meta = pf.metadata
    end = meta.num_rows if rows is None else min(meta.num_rows, first_row + rows)
    if end <= first_row:
        return
    groups, seen, start = [], 0, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if seen + n > first_row and seen < end:
            if not groups:
                start = seen
            groups.append(g)
        seen += n
    seen = start
    batches = pf.iter_batches(batch_size=max(1, chunk_rows), row_groups=groups,
                              columns=list(batch.header))
    for record_batch in batches:
        n = record_batch.num_rows
        lo, hi = max(first_row - seen, 0), min(end - seen, n)
        seen += n
        if hi > lo:
            yield record_batch.slice(lo, hi - lo)
        if seen >= end:
            break


def _chunk(header: tuple[str, ...], table: Any, rows_before: int) -> RawChunk:
    """Records as text cells (nulls as empty cells), numbered after ``rows_before`` records."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = {}
    for name in header:
        arr = table.column(name)
        if not pa.types.is_string(arr.type):
            arr = pc.cast(arr, pa.string())
        columns[name] = pd.array(pc.fill_null(arr, ""), dtype="str")
    frame = pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))
    numbers = list(range(rows_before + 1, rows_before + table.num_rows + 1))
    return RawChunk(frame, numbers, [r + 1 for r in numbers], [])


def parquet_slice(source: Source, header: tuple[str, ...], first_row: int, rows: int) -> bytes:
    """Records ``first_row`` to ``first_row + rows`` as an Arrow IPC stream: what the driver
    sends a worker that cannot read the file itself."""
    import pyarrow as pa

    batch = BatchFile("slice", "", 0, header, (), (), source, kind="parquet")
    sink = pa.BufferOutputStream()
    writer = None
    for table in _slices(batch, rows, first_row, rows):
        if writer is None:
            writer = pa.ipc.new_stream(sink, table.schema)
        writer.write_batch(table)
    if writer is None:
        return b""
    writer.close()
    return sink.getvalue().to_pybytes()


def ipc_chunk(data: bytes, header: tuple[str, ...], rows_before: int) -> RawChunk:
    """The records of :func:`parquet_slice`, numbered after ``rows_before`` records."""
    import pyarrow as pa

    if not data:
        return make_chunk(header, [], [], [], [])
    table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    return _chunk(header, table, rows_before)


def path_of(batch: BatchFile) -> str:
    return os.fspath(batch.source) if not isinstance(batch.source, bytes) else ""
