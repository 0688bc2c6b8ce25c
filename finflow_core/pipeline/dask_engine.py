"""The weekly run on a Dask cluster: the same decisions and PSI as one process, over partitions.

``weekly_run_dask`` splits a batch into row-range partitions, validates, scores, explains
and counts drift bins on the workers, and streams the partition results back, in partition
order, into one store transaction through the same :class:`~finflow_core.services.batches.StoreSink`
the single-process run uses. The summary is built exactly as
:func:`finflow_core.pipeline.batch_run.process_batch` builds it.

How it stays identical to the single-process run
------------------------------------------------
* **Partitions keep global row and line numbers.** A CSV is cut into byte ranges at record
  boundaries (after a line break; when the file contains a quote character the cut points
  come from a real CSV parse on the driver, so a quoted cell with a line break is never
  split). Each range is parsed on a worker by :func:`finflow_core.lending.intake.reader.iter_chunks`
  itself (the header is put in front of it), so blank lines, misshapen rows and cell text
  are handled exactly as in one process; row and line numbers are then shifted to their
  place in the whole file. A Parquet file is split by row groups; row ``k`` is record
  ``k`` (line ``k + 1``) and its cells are the values cast to text.
* **Duplicate ids are found globally first.** A first, cheap pass on the workers returns
  each partition's record count and ids; the driver works out the global row numbers and,
  for each id seen in more than one partition, the row of its first occurrence. Each
  partition's :class:`~finflow_core.lending.intake.validation.BatchValidator` starts knowing the ids of
  earlier partitions, so later occurrences are quarantined with the same message ("... on
  row N") as in one process: first occurrence wins.
* **Drift counts add up.** Bins are fixed at training, so per-partition bin counts summed
  on the driver give the same PSI as one pass.

The model is loaded (and its signature checked) on the driver and shipped to the workers
once (``Client.scatter(..., broadcast=True)``); each worker builds its ScoringEngine once
per run. Workers therefore need neither the model files nor ``FINFLOW_SECRET_KEY`` nor the
database: only FinFlow installed (same version) and read access to the batch file.

Pointing it at an existing cluster
----------------------------------
Start a scheduler and workers on machines that all have FinFlow (and its dependencies,
same versions) installed::

    dask scheduler --host 10.0.0.5 --port 8786                    # one machine
    dask worker tcp://10.0.0.5:8786 --nthreads 1 --nworkers 2     # each worker machine
    # one thread per worker process: LightGBM and SHAP are compiled code; set
    # OMP_NUM_THREADS=1 on the workers so several OpenMP pools do not fight for the cores

then run, on the machine that has the store and the model::

    finflow weekly-run --data /shared/week.csv --engine dask --scheduler tcp://10.0.0.5:8786

The workers read the batch file at the same path as the driver (shared storage such as
NFS), or pass ``send_data=True`` to :func:`weekly_run_dask` to have the driver read each
partition and send its bytes with the task. Without ``--scheduler`` a LocalCluster is
started (one single-threaded worker process per core) and closed afterwards. On a single
2-core machine the LocalCluster is no faster than the chunked single-process run (see
``bench/README.md``): the value of Dask is more machines.
"""

from __future__ import annotations

import csv
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.config import Config
from finflow_core.lending.intake.parquet import parquet_chunks, row_group_sizes
from finflow_core.lending.intake.reader import (
    BLOCK,
    BatchFile,
    RawChunk,
    iter_chunks,
)
from finflow_core.lending.intake.validation import BatchValidator, ChunkResult
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import DECISION_COLUMNS, ScoringEngine
from finflow_core.lending.strategy import Strategy
from finflow_core.pipeline.run import Part

#: Default CSV partition size: about 75,000 applications of the shipped schema.
DEFAULT_BLOCKSIZE = 8 << 20
#: Default Parquet partition size in records (about the same as a CSV partition).
DEFAULT_PARQUET_ROWS = 75_000


# -- partitions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Partition:
    """One row range of the batch file.

    CSV: bytes ``[start, end)``; ``lines_before`` is the number of line breaks before
    ``start``. Parquet: row groups ``[start, end)``, ``lines_before`` the rows before them.
    """

    index: int
    kind: str  # "csv" | "parquet"
    start: int
    end: int
    lines_before: int


@dataclass
class _Plan:
    """What a partition's worker needs besides the file: where its records stand globally."""

    partition: Partition
    rows_before: int  # records in all earlier partitions
    seen_before: dict[str, int] = field(default_factory=dict)  # id -> first row, earlier partitions


@dataclass
class PartitionResult:
    """What a worker sends back for one partition."""

    index: int
    chunk: ChunkResult
    scored: pd.DataFrame
    drift: dict[str, np.ndarray]
    timings: dict[str, float]


def csv_partitions(path: str | os.PathLike[str], blocksize: int = DEFAULT_BLOCKSIZE,
                   partitions: int | None = None) -> list[Partition]:
    """Byte ranges of a CSV file that start and end at record boundaries.

    The first range starts at byte 0 (it holds the header). Cut points come after a line
    break; if the file contains any quote character, they come from a CSV parse instead,
    so a quoted cell that holds a line break is never cut.
    """
    size = os.path.getsize(path)
    if partitions is not None:
        blocksize = max(1, -(-size // max(1, partitions)))
    cuts = _cuts_plain(path, blocksize)
    if cuts is None:
        cuts = _cuts_quoted(path, blocksize)
    out: list[Partition] = []
    start, lines = 0, 0
    for end, lines_at_end in [*cuts, (size, -1)]:
        if end <= start:
            continue
        out.append(Partition(len(out), "csv", start, end, lines))
        start, lines = end, lines_at_end
    return out


def _cuts_plain(path: str | os.PathLike[str], blocksize: int) -> list[tuple[int, int]] | None:
    """Cut points (byte offset, line breaks before it) after the first line break past each
    multiple of ``blocksize``; None if the file holds a quote character."""
    cuts: list[tuple[int, int]] = []
    target = blocksize
    offset, breaks = 0, 0
    with open(path, "rb") as fh:
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


def _cuts_quoted(path: str | os.PathLike[str], blocksize: int) -> list[tuple[int, int]]:
    """Cut points found by parsing the CSV: only between records, never inside a quoted cell."""
    state = {"offset": 0, "breaks": 0}

    def lines() -> Iterator[str]:
        with open(path, "rb") as fh:
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


def parquet_partitions(path: str | os.PathLike[str], partitions: int | None = None,
                       rows_per_partition: int | None = None) -> list[Partition]:
    """Row ranges of a Parquet file: ``start``/``end`` are record positions, so a file with one
    huge row group (pandas' default) still splits into partitions of bounded size."""
    total = sum(row_group_sizes(str(path)))
    size = rows_per_partition or DEFAULT_PARQUET_ROWS
    if partitions is not None:
        size = max(1, -(-total // max(1, partitions)))
    bounds = [*range(0, total, max(1, size)), total]
    return [Partition(i, "parquet", lo, hi, lo)
            for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if hi > lo]


# -- reading a partition (on a worker) -------------------------------------------------------------

def read_partition(path: str, part: Partition, header: tuple[str, ...], data: bytes | None = None,
                   chunk_rows: int = 10**9) -> Iterator[RawChunk]:
    """The partition's records as RawChunks with row numbers local to it (1 = its first
    record) and line numbers global to the file."""
    if part.kind == "parquet":
        yield _parquet_chunk(path, part, header)
        return
    if data is None:
        data = read_bytes(path, part)
    if part.start == 0:
        source, shift = data, 0
    else:
        head = _header_bytes(path)
        source, shift = head + data, part.lines_before - head.count(b"\n")
    batch = BatchFile("partition", "", len(source), header, (), (), source)
    for raw in iter_chunks(batch, chunk_rows):
        if shift:
            raw.lines = [x + shift for x in raw.lines]
            raw.misshapen = [(rn, line + shift, cells) for rn, line, cells in raw.misshapen]
        yield raw


def read_bytes(path: str, part: Partition) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(part.start)
        return fh.read(part.end - part.start)


_HEADERS: dict[str, bytes] = {}


def _header_bytes(path: str) -> bytes:
    """The file's header record as bytes (cached per file on each worker)."""
    if path not in _HEADERS:
        cuts = _header_end(path)
        with open(path, "rb") as fh:
            _HEADERS[path] = fh.read(cuts)
    return _HEADERS[path]


def _header_end(path: str) -> int:
    offset = 0

    def lines() -> Iterator[str]:
        nonlocal offset
        with open(path, "rb") as fh:
            for raw in fh:
                offset += len(raw)
                yield raw.decode("utf-8-sig", errors="replace")

    next(csv.reader(lines()))
    return offset


def _parquet_chunk(path: str, part: Partition, header: tuple[str, ...]) -> RawChunk:
    """The partition's records, numbered from 1 within it (the plan shifts them globally)."""
    batch = BatchFile("partition", "", 0, header, (), (), path, kind="parquet")
    raws = list(parquet_chunks(batch, part.end - part.start, first_row=part.start,
                               rows=part.end - part.start))
    raw = raws[0] if len(raws) == 1 else _concat(raws)
    raw.row_numbers = [r - part.start for r in raw.row_numbers]
    return raw


# -- the two passes (run on workers) -----------------------------------------------------------

def scan_partition(path: str, part: Partition, header: tuple[str, ...], id_column: str,
                   data: bytes | None = None) -> tuple[int, pd.DataFrame]:
    """First pass: the partition's record count and each id's first local row number."""
    n = 0
    ids, rows = [], []
    at = list(header).index(id_column)
    for raw in read_partition(path, part, header, data):  # record numbers run on across chunks
        n += len(raw.row_numbers) + len(raw.misshapen)
        if len(raw.frame):
            ids.append(raw.frame.iloc[:, at].astype(str).to_numpy())
            rows.append(np.asarray(raw.row_numbers, dtype=np.int64))
    frame = pd.DataFrame({
        "id": np.concatenate(ids) if ids else np.array([], dtype=object),
        "row": np.concatenate(rows) if rows else np.array([], dtype=np.int64),
    })
    return n, frame.drop_duplicates("id", keep="first")


_ENGINES: dict[str, ScoringEngine] = {}


def _engine(payload: dict[str, Any]) -> ScoringEngine:
    """This run's ScoringEngine on this worker, built once."""
    token = payload["token"]
    if token not in _ENGINES:
        _ENGINES.clear()  # one run at a time per worker process is the normal case
        _ENGINES[token] = ScoringEngine(payload["bundle"], payload["config"], payload["strategy"])
    return _ENGINES[token]


def process_partition(payload: dict[str, Any], path: str, plan: _Plan, header: tuple[str, ...],
                      data: bytes | None = None) -> PartitionResult:
    """Second pass: validate, score, route, explain and count drift bins of one partition."""
    engine = _engine(payload)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    raws = list(read_partition(path, plan.partition, header, data))
    raw = raws[0] if len(raws) == 1 else _concat(raws)
    raw.row_numbers = [r + plan.rows_before for r in raw.row_numbers]
    raw.misshapen = [(rn + plan.rows_before, line, cells) for rn, line, cells in raw.misshapen]
    timings["read"] = time.perf_counter() - t
    t = time.perf_counter()
    # ids of earlier partitions: the first occurrence wins, as in one process
    validator = BatchValidator(engine.config, seen_ids=plan.seen_before)
    result = validator.validate(raw)
    timings["validate"] = time.perf_counter() - t
    drift: dict[str, np.ndarray] = {}
    if len(result.valid):
        scored = engine.score(result.valid, result.row_numbers, timings=timings, drift=drift)
    else:  # nothing valid here: the models refuse an empty matrix
        scored = pd.DataFrame({c: pd.Series(dtype=object) for c in DECISION_COLUMNS})
    return PartitionResult(plan.partition.index, result, scored, drift, timings)


def _concat(raws: list[RawChunk]) -> RawChunk:
    frames = [r.frame for r in raws if len(r.frame)]
    frame = pd.concat(frames, ignore_index=True) if frames else raws[0].frame
    return RawChunk(frame, [x for r in raws for x in r.row_numbers], [x for r in raws for x in r.lines],
                    [x for r in raws for x in r.misshapen])


# -- the engine (on the driver) ------------------------------------------------------------------

class DaskEngine:
    """Makes a batch's parts on a Dask cluster.

    Parameters
    ----------
    scheduler : a scheduler address (``tcp://host:8786``), an existing ``distributed.Client``,
        or None for a LocalCluster started for the run (one single-threaded worker per core).
    partitions : about that many partitions (else CSV files are cut every ``blocksize``
        bytes and Parquet files every ``parquet_rows`` rows).
    send_data : the driver reads each CSV partition and sends its bytes (for workers
        without access to the file).
    window : partitions in flight or waiting to be stored at once (default: two per worker
        thread), which bounds the driver's memory.
    """

    name = "dask"

    def __init__(self, scheduler: Any = None, *, partitions: int | None = None,
                 blocksize: int = DEFAULT_BLOCKSIZE, parquet_rows: int = DEFAULT_PARQUET_ROWS,
                 send_data: bool = False, window: int | None = None) -> None:
        self.scheduler = scheduler
        self.partitions = partitions
        self.blocksize = blocksize
        self.parquet_rows = parquet_rows
        self.send_data = send_data
        self.window = window
        self.stats: dict[str, float] = {}

    def parts(self, batch: BatchFile, scoring: ScoringEngine) -> Iterator[Part]:
        path = str(batch.source)
        if batch.kind == "parquet":
            parts = parquet_partitions(path, self.partitions, self.parquet_rows)
        else:
            parts = csv_partitions(path, self.blocksize, self.partitions)
        self.stats["partitions"] = len(parts)
        with _client(self.scheduler) as client:
            payload = client.scatter(_payload(scoring.bundle, scoring.config, scoring.strategy),
                                     broadcast=True, hash=False)
            threads = max(sum(client.nthreads().values()), 1)
            started = time.perf_counter()
            plans = _first_pass(client, path, parts, batch.header, scoring.config.id_column,
                                self.send_data)
            self.stats["first_pass"] = round(time.perf_counter() - started, 4)
            yield from _second_pass(client, payload, path, plans, batch.header, self.send_data,
                                    self.window or 2 * threads)


def _payload(bundle: ModelBundle, config: Config, strategy: Strategy) -> dict[str, Any]:
    return {"token": uuid.uuid4().hex, "bundle": bundle, "config": config, "strategy": strategy}


class _client:
    """A Client for ``scheduler`` (address, Client, or None for a LocalCluster), closed after
    use unless the caller passed it in."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.owned: list[Any] = []

    def __enter__(self) -> Any:
        from distributed import Client, LocalCluster

        if self.scheduler is not None and not isinstance(self.scheduler, str):
            return self.scheduler  # a Client given by the caller
        if self.scheduler:
            client = Client(self.scheduler)
            self.owned = [client]
            return client
        cluster = LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        self.owned = [client, cluster]
        return client

    def __exit__(self, *exc: Any) -> None:
        for x in self.owned:
            x.close()


def _first_pass(client: Any, path: str, parts: list[Partition], header: tuple[str, ...],
                id_column: str, send_data: bool) -> list[_Plan]:
    """Record counts and ids of every partition; global row offsets and earlier ids per partition."""
    futures = [
        client.submit(scan_partition, path, p, header, id_column,
                      read_bytes(path, p) if send_data and p.kind == "csv" else None,
                      pure=False, key=f"finflow-scan-{p.index}-{uuid.uuid4().hex[:8]}")
        for p in parts
    ]
    results = client.gather(futures)
    del futures
    counts = [n for n, _ in results]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int) if counts else np.array([], int)
    ids = pd.concat(
        [f.assign(row=f["row"] + off, part=i)
         for i, ((_, f), off) in enumerate(zip(results, offsets, strict=True))],
        ignore_index=True,
    ) if results else pd.DataFrame({"id": [], "row": [], "part": []})
    # ids found in more than one partition: where each first appears
    repeated = ids[ids["id"].duplicated(keep=False)]
    first = repeated.drop_duplicates("id", keep="first")  # partitions are in file order
    plans = []
    for i, p in enumerate(parts):
        earlier = first[first["part"] < i]
        mine = repeated[repeated["part"] == i]["id"]
        seen = earlier[earlier["id"].isin(mine)]
        plans.append(_Plan(p, int(offsets[i]), dict(zip(seen["id"], seen["row"].astype(int), strict=True))))
    return plans


def _second_pass(client: Any, payload: Any, path: str, plans: list[_Plan], header: tuple[str, ...],
                 send_data: bool, window: int) -> Iterator[Part]:
    """Score partitions on the workers; yield them in partition order as they arrive."""
    from distributed import as_completed

    todo = iter(plans)
    index_of: dict[Any, int] = {}
    ready: dict[int, PartitionResult] = {}
    pending = as_completed()

    def submit_next() -> None:
        plan = next(todo, None)
        if plan is None:
            return
        p = plan.partition
        data = read_bytes(path, p) if send_data and p.kind == "csv" else None
        fut = client.submit(process_partition, payload, path, plan, header, data, pure=False,
                            key=f"finflow-score-{p.index}-{uuid.uuid4().hex[:8]}")
        index_of[fut.key] = p.index
        pending.add(fut)

    for _ in range(window):
        submit_next()
    next_index = 0
    for fut in pending:
        res: PartitionResult = fut.result()
        ready[index_of.pop(fut.key)] = res
        fut.release()
        while next_index in ready:
            part = ready.pop(next_index)
            next_index += 1
            yield Part(part.chunk, part.scored, part.drift, part.timings)
            submit_next()  # a slot is free once a result is stored
