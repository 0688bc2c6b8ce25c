"""Cutting a batch into row-range partitions, and reading one partition back (on a worker).

A partition keeps its records' global row and line numbers, so the cluster's run stores
exactly what one process stores:

* **CSV** is cut into byte ranges at record boundaries (after a line break; when the file
  holds a quote character the cut points come from a real CSV parse, so a quoted cell with
  a line break is never split). Each range is parsed by
  :func:`~finflow_core.lending.intake.sources.iter_chunks` itself, with the header put in
  front of it; line numbers are then shifted to their place in the file. Every range
  carries the SHA-256 of its bytes: a worker that reads other bytes (the file changed, or
  its mount holds another copy) refuses the partition instead of scoring the wrong rows.
* **Parquet** is cut into record ranges, whatever its row groups: a file written with
  pandas' defaults (one row group) still gives partitions of bounded size. Record ``k`` is
  line ``k + 1``.

Sources are paths (the workers read the same path: shared storage) or, with ``send_data``,
bytes the driver reads and sends with each task (:func:`partition_bytes`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from finflow_core.errors import BatchRejected, ClusterError
from finflow_core.lending.intake.parquet import (
    ipc_chunk,
    parquet_chunks,
    parquet_slice,
    row_group_sizes,
)
from finflow_core.lending.intake.reader import BLOCK, BatchFile, RawChunk, Source
from finflow_core.lending.intake.sources import iter_chunks

#: Default CSV partition size: about 75,000 applications of the shipped schema.
DEFAULT_BLOCKSIZE = 8 << 20
#: Default Parquet partition size in records (about the same as a CSV partition).
DEFAULT_PARQUET_ROWS = 75_000


@dataclass(frozen=True)
class Partition:
    """One row range of the batch file.

    CSV: bytes ``[start, end)``, ``lines_before`` line breaks before ``start``, ``sha256`` of
    those bytes. Parquet: records ``[start, end)``, ``lines_before`` the records before them.
    """

    index: int
    kind: str  # "csv" | "parquet"
    start: int
    end: int
    lines_before: int
    sha256: str = ""


@dataclass(frozen=True)
class FileRef:
    """What a worker needs to read the batch file: where it is, what it is called (for
    messages), its columns and (CSV) its header record's bytes. Sent with each task."""

    path: str
    name: str
    header: tuple[str, ...]
    head: bytes = b""

    @classmethod
    def of(cls, batch: BatchFile, path: str) -> FileRef:
        head = header_bytes(batch.source) if batch.kind != "parquet" else b""
        return cls(path, batch.name, batch.header, head)


@dataclass
class Plan:
    """What a partition's worker needs besides the file: where its records stand globally."""

    partition: Partition
    rows_before: int  # records in all earlier partitions
    seen_before: dict[str, int] = field(default_factory=dict)  # id -> first row, earlier partitions


def _open(source: Source) -> BinaryIO:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    return open(source, "rb")  # noqa: SIM115 - closed by the caller


def _size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else os.path.getsize(source)


# -- planning (on the driver) ---------------------------------------------------------------------

def plan_partitions(batch: BatchFile, *, partitions: int | None = None,
                    blocksize: int = DEFAULT_BLOCKSIZE,
                    parquet_rows: int = DEFAULT_PARQUET_ROWS) -> list[Partition]:
    """The batch's partitions: about ``partitions`` of them, else every ``blocksize`` bytes
    (CSV) or ``parquet_rows`` records (Parquet)."""
    if batch.kind == "parquet":
        return parquet_partitions(batch.source, partitions, parquet_rows)
    return csv_partitions(batch.source, blocksize, partitions)


def csv_partitions(source: Source, blocksize: int = DEFAULT_BLOCKSIZE,
                   partitions: int | None = None) -> list[Partition]:
    """Byte ranges of a CSV file that start and end at record boundaries.

    The first range starts at byte 0 (it holds the header). Cut points come after a line
    break; if the file contains any quote character, they come from a CSV parse instead,
    so a quoted cell that holds a line break is never cut.
    """
    size = _size(source)
    if partitions is not None:
        blocksize = max(1, -(-size // max(1, partitions)))
    cuts = _cuts_plain(source, blocksize)
    if cuts is None:
        cuts = _cuts_quoted(source, blocksize)
    bounds = [(0, 0), *cuts, (size, -1)]
    ranges = [(a, b, lines) for (a, lines), (b, _) in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    digests = _range_digests(source, [(a, b) for a, b, _ in ranges])
    return [Partition(i, "csv", a, b, lines, digest)
            for i, ((a, b, lines), digest) in enumerate(zip(ranges, digests, strict=True))]


def _cuts_plain(source: Source, blocksize: int) -> list[tuple[int, int]] | None:
    """Cut points (byte offset, line breaks before it) after the first line break past each
    multiple of ``blocksize``; None if the file holds a quote character."""
    cuts: list[tuple[int, int]] = []
    target = blocksize
    offset, breaks = 0, 0
    with _open(source) as fh:
        while block := fh.read(BLOCK):
            if b'"' in block:
                return None
            end = offset + len(block)
            pos = max(target - offset, 0)
            while target < end:
                nl = block.find(b"\n", pos)
                if nl < 0:
                    break
                cut = offset + nl + 1
                cuts.append((cut, breaks + block.count(b"\n", 0, nl + 1)))
                target = max(target + blocksize, cut + 1)
                pos = max(target - offset, nl + 1)
            breaks += block.count(b"\n")
            offset = end
    return cuts


def _cuts_quoted(source: Source, blocksize: int) -> list[tuple[int, int]]:
    """Cut points found by parsing the CSV: only between records, never inside a quoted cell."""
    state = {"offset": 0, "breaks": 0}

    def lines() -> Iterator[str]:
        with _open(source) as fh:
            first = True
            for raw in fh:  # split at b"\n": the record ends after its last line break
                state["offset"] += len(raw)
                state["breaks"] += raw.endswith(b"\n")
                yield raw.decode("utf-8-sig" if first else "utf-8")
                first = False

    cuts: list[tuple[int, int]] = []
    target = blocksize
    reader = csv.reader(lines())
    next(reader, None)  # the header stays with the first partition
    for _ in reader:
        if state["offset"] >= target:
            cuts.append((state["offset"], state["breaks"]))
            target = state["offset"] + blocksize
    return cuts


def _range_digests(source: Source, ranges: list[tuple[int, int]]) -> list[str]:
    """SHA-256 of each byte range (contiguous, in order), in one sequential read."""
    out: list[str] = []
    with _open(source) as fh:
        for a, b in ranges:
            fh.seek(a)
            h, left = hashlib.sha256(), b - a
            while left > 0 and (block := fh.read(min(BLOCK, left))):
                h.update(block)
                left -= len(block)
            out.append(h.hexdigest())
    return out


def parquet_partitions(source: Source, partitions: int | None = None,
                       rows_per_partition: int | None = None) -> list[Partition]:
    """Record ranges of a Parquet file: ``start``/``end`` are record positions, so a file with one
    huge row group (pandas' default) still splits into partitions of bounded size."""
    total = sum(row_group_sizes(source))
    size = rows_per_partition or DEFAULT_PARQUET_ROWS
    if partitions is not None:
        size = max(1, -(-total // max(1, partitions)))
    bounds = [*range(0, total, max(1, size)), total]
    return [Partition(i, "parquet", lo, hi, lo)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if hi > lo]


def header_bytes(source: Source) -> bytes:
    """A CSV file's header record as bytes (sent with each task, so workers keep no cache)."""
    offset = 0

    def lines() -> Iterator[str]:
        nonlocal offset
        with _open(source) as fh:
            for raw in fh:
                offset += len(raw)
                yield raw.decode("utf-8-sig", errors="replace")

    next(csv.reader(lines()))
    with _open(source) as fh:
        return fh.read(offset)


def partition_bytes(source: Source, part: Partition, header: tuple[str, ...]) -> bytes:
    """What the driver sends for a partition when workers cannot read the file itself: the CSV
    range, or the Parquet records as an Arrow IPC stream."""
    if part.kind == "parquet":
        return parquet_slice(source, header, part.start, part.end - part.start)
    with _open(source) as fh:
        fh.seek(part.start)
        return fh.read(part.end - part.start)


# -- reading (on a worker) -----------------------------------------------------------------------

def read_partition(ref: FileRef, part: Partition, data: bytes | None = None,
                   chunk_rows: int = 10**9) -> Iterator[RawChunk]:
    """The partition's records as RawChunks with row numbers local to it (1 = its first
    record) and line numbers global to the file; ``data`` is what the driver sent (else
    the worker reads ``ref.path``)."""
    if part.kind == "parquet":
        yield _parquet_chunk(ref, part, data)
        return
    if data is None:
        data = _read_range(ref.path, part)
    if part.sha256 and hashlib.sha256(data).hexdigest() != part.sha256:
        raise ClusterError(
            f"the worker read other bytes than this machine at {ref.path} (partition "
            f"{part.index}): the file changed during the run, or the worker's mount holds another "
            "copy. Give every worker the same file (shared storage), or run with --send-data.",
            reason="data_differs", path=ref.path, partition=part.index,
        )
    if part.start == 0:
        source, shift = data, 0
    else:
        source, shift = ref.head + data, part.lines_before - ref.head.count(b"\n")
    batch = BatchFile(ref.name, "", len(source), ref.header, (), (), source)
    try:
        for raw in iter_chunks(batch, chunk_rows):
            if shift:
                raw.lines = [x + shift for x in raw.lines]
                raw.misshapen = [(rn, line + shift, cells) for rn, line, cells in raw.misshapen]
            yield raw
    except BatchRejected as exc:
        raise _shifted(exc, shift) from None


def _read_range(path: str, part: Partition) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(part.start)
        return fh.read(part.end - part.start)


def unreadable(path: str, exc: OSError, *, worker: str = "a worker") -> ClusterError:
    """The one message for a worker that cannot open the batch file."""
    who = worker if worker == "a worker" else f"worker {worker}"
    return ClusterError(
        f"{who} cannot read the batch file {path} ({exc.strerror or type(exc).__name__}): "
        "workers read the file at the same path as this machine, so put it on storage every "
        "worker mounts at that path, or run with --send-data to send it from here.",
        reason="data_unreadable", path=path, worker=worker,
    )


def _shifted(exc: BatchRejected, shift: int) -> BatchRejected:
    """The same refusal with the file's line number, not the partition's."""
    line = exc.details.get("line")
    if not shift or not isinstance(line, int):
        return exc
    details = {k: v for k, v in exc.details.items() if k != "reason"}
    details["line"] = line + shift
    message = exc.message.replace(f"line {line}", f"line {line + shift}", 1)
    return BatchRejected(message, reason=exc.reason, **details)


def _parquet_chunk(ref: FileRef, part: Partition, data: bytes | None) -> RawChunk:
    """The partition's records, numbered from 1 within it (the plan shifts them globally)."""
    rows = part.end - part.start
    if data is not None:  # the driver sent exactly these records
        raw = ipc_chunk(data, ref.header, part.start)
    else:
        batch = BatchFile(ref.name, "", 0, ref.header, (), (), ref.path, kind="parquet")
        raws = list(parquet_chunks(batch, rows, first_row=part.start, rows=rows))
        raw = raws[0] if len(raws) == 1 else concat(raws)
    raw.row_numbers = [r - part.start for r in raw.row_numbers]
    return raw


def concat(raws: list[RawChunk]) -> RawChunk:
    """One RawChunk of several (in order)."""
    import pandas as pd

    frames = [r.frame for r in raws if len(r.frame)]
    frame = pd.concat(frames, ignore_index=True) if frames else raws[0].frame
    return RawChunk(frame, [x for r in raws for x in r.row_numbers], [x for r in raws for x in r.lines],
                    [x for r in raws for x in r.misshapen])
