"""The weekly run on a Dask cluster: the same decisions and PSI as one process, over partitions.

:class:`DaskEngine` makes a batch's parts on a cluster for
:func:`~finflow_core.pipeline.run.run_batch`, which stores them, in partition order, in
the same store transaction as the single-process run (:mod:`~finflow_core.pipeline.local`).

How it stays identical to the single-process run
------------------------------------------------
* **Partitions keep global row and line numbers** (:mod:`~finflow_core.pipeline.partitions`).
* **Duplicate ids are found globally first.** A first, cheap pass on the workers returns
  each partition's record count and ids; the driver works out the global row numbers and,
  for each id seen in more than one partition, the row of its first occurrence. Each
  partition's validator starts knowing the ids of earlier partitions, so later occurrences
  are quarantined with the same message ("... on row N") as in one process.
* **Drift counts add up.** Bins are fixed at training, so per-partition bin counts summed
  on the driver give the same PSI as one pass.

How it stays right on a shared cluster
--------------------------------------
* **Isolated runs.** The model bundle, config and strategy go to the cluster as one
  :class:`~finflow_core.pipeline.dask_tasks.Payload` under a key made of this run's id and
  the payload's SHA-256; every task key carries the run id; a worker checks the payload's
  hash before it builds (or reuses) a ScoringEngine. Any number of runs, from any number
  of installations, share one cluster without seeing each other's model.
* **Checked workers.** Before any work, every worker reports its FinFlow and library
  versions and reads the batch file's size and first and last 64 KiB; a worker that
  differs or cannot read the file stops the run with one message naming it. Each CSV
  partition also carries the SHA-256 of its bytes, checked where it is read.
* **Lost workers.** The payload is broadcast to every worker; a task lost with its worker is
  rescheduled, and if every copy of the payload was lost it is sent again and the lost
  partitions resubmitted (see :class:`~finflow_core.pipeline.dask_cluster.TaskWatch`). Dask
  also retries a task that raised (``retries``). A run the cluster cannot finish fails with
  :class:`~finflow_core.errors.ClusterLost` and, because a batch loads invisibly and is published only at the end, stores nothing
  (the partial load is removed).

The driver loads the champion (checking its signature); workers need neither the model
files nor ``FINFLOW_SECRET_KEY`` nor the database: only FinFlow and the same library
versions, and read access to the batch file at the same absolute path (shared storage), or
``send_data=True`` to have the driver send each partition's bytes. See docs/SCALE_OUT.md.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.errors import BatchRejected, ClusterError, ClusterLost
from finflow_core.lending.config import FINFLOW_CSV
from finflow_core.lending.intake.reader import BatchFile
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.pipeline.dask_cluster import DEFAULT_CONNECT_TIMEOUT, Cluster, TaskWatch
from finflow_core.pipeline.dask_tasks import (
    PartitionResult,
    Payload,
    check_worker,
    file_probe,
    forget,
    installation,
    process_partition,
    scan_partition,
)
from finflow_core.pipeline.partitions import (
    DEFAULT_BLOCKSIZE,
    DEFAULT_PARQUET_ROWS,
    FileRef,
    Partition,
    Plan,
    csv_partitions,
    parquet_partitions,
    partition_bytes,
    plan_partitions,
)
from finflow_core.pipeline.run import Part

__all__ = ["DEFAULT_BLOCKSIZE", "DEFAULT_PARQUET_ROWS", "DaskEngine", "csv_partitions",
           "parquet_partitions"]

#: Dask's own retries of a task that raised on a worker.
RETRIES = 2


class DaskEngine:
    """Makes a batch's parts on a Dask cluster.

    Parameters
    ----------
    scheduler : a scheduler address (``tcp://host:8786``), an existing ``distributed.Client``,
        or None for a LocalCluster started for the run (one single-threaded worker per core,
        on loopback, without a dashboard).
    partitions : about that many partitions (else CSV files are cut every ``blocksize``
        bytes and Parquet files every ``parquet_rows`` records, whatever their row groups).
    send_data : the driver reads each partition and sends it with its task (for workers
        without the file; a batch given as bytes is always sent).
    window : partitions in flight or waiting to be stored at once (default: two per worker
        thread), which bounds the driver's memory.
    connect_timeout : seconds to reach the scheduler, to wait for a first worker, and to wait
        for workers to come back when all have left during a run.
    """

    name = "dask"

    def __init__(self, scheduler: Any = None, *, partitions: int | None = None,
                 blocksize: int = DEFAULT_BLOCKSIZE, parquet_rows: int = DEFAULT_PARQUET_ROWS,
                 send_data: bool = False, window: int | None = None,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, retries: int = RETRIES) -> None:
        self.scheduler = scheduler
        self.partitions = partitions
        self.blocksize = blocksize
        self.parquet_rows = parquet_rows
        self.send_data = send_data
        self.window = window
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.stats: dict[str, float] = {}

    def parts(self, batch: BatchFile, scoring: ScoringEngine) -> Iterator[Part]:
        if batch.kind == "csv" and batch.form != FINFLOW_CSV:  # workers cut the file's raw bytes
            raise BatchRejected(
                f"{batch.name}: the file is {batch.form.shown} (dataset.encoding, dataset.delimiter) "
                "and a Dask run reads UTF-8, comma-separated files only: run it without --engine "
                "dask, or save it as UTF-8 with commas",
                reason="encoding", encoding=batch.encoding, delimiter=batch.delimiter)
        source = batch.source if isinstance(batch.source, bytes) else os.path.abspath(batch.source)
        send = self.send_data or isinstance(source, bytes)
        parts = plan_partitions(replace(batch, source=source), partitions=self.partitions,
                                blocksize=self.blocksize, parquet_rows=self.parquet_rows)
        self.stats["partitions"] = len(parts)
        path = "<upload>" if isinstance(source, bytes) else source
        run = _Run(self, source, send, FileRef.of(replace(batch, source=source), path))
        with Cluster(self.scheduler, self.connect_timeout) as client:
            run.client = client
            try:
                run.preflight()
                payload = Payload.build(run.id, scoring.bundle, scoring.config, scoring.strategy)
                run.send(payload)
                started = time.perf_counter()
                plans = run.first_pass(parts, scoring.config.id_column)
                self.stats["first_pass"] = round(time.perf_counter() - started, 4)
                yield from run.second_pass(plans)
            finally:
                run.close()
                self.stats["resubmitted"] = run.resubmitted


class _Run:
    """One run's state on the driver: its id, its payload future, its open tasks."""

    def __init__(self, engine: DaskEngine, source: str | bytes, send: bool, ref: FileRef) -> None:
        self.engine = engine
        self.id = uuid.uuid4().hex
        self.source = source
        self.path = ref.path
        self.send_data = send
        self.ref = ref
        self.client: Any = None
        self.payload: Payload | None = None
        self.future: Any = None
        self.sent = 0
        self.resubmitted = 0
        self.watches: list[TaskWatch] = []

    # -- before the work -------------------------------------------------------------------------
    def preflight(self) -> None:
        """Every worker has this FinFlow installation and reads this batch file, or one message."""
        probe = None if self.send_data else file_probe(str(self.source))
        try:
            answers = self.client.run(check_worker, None if self.send_data else self.path, probe,
                                      installation(), on_error="return")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"the workers did not answer the pre-flight check: {exc}",
                               reason="no_answer") from None
        problems = []
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                problems.append(f"{worker}: cannot run FinFlow ({type(answer).__name__}: {answer})")
            elif answer:
                problems.append(f"{worker}: {'; '.join(answer)}")
        if problems:
            unreadable = any("cannot read" in p or "not the file" in p for p in problems)
            hint = ("Workers read the batch at the same absolute path as this machine: put it on "
                    "storage every worker mounts there, or run with --send-data."
                    if unreadable else
                    "Install the same FinFlow and library versions on every worker.")
            raise ClusterError(
                f"{len(problems)} of {len(answers)} workers cannot take part in this run: "
                + " | ".join(problems) + f". {hint}",
                reason="data_unreadable" if unreadable else "worker_mismatch", workers=problems,
            )

    def send(self, payload: Payload) -> None:
        """Broadcast the payload to every worker under this run's key (again after a loss).

        A worker that dies while it is being sent to closes the connection: the payload is
        sent again (under a new key) to whoever is left, until the connect timeout."""
        self.payload = payload
        deadline = time.monotonic() + self.engine.connect_timeout
        while True:
            self.sent += 1
            key = payload.key if self.sent == 1 else f"{payload.key}-{self.sent}"
            try:
                self.future = self.client.scatter({key: payload}, broadcast=True, hash=False)[key]
                return
            except (OSError, TimeoutError) as exc:  # distributed's CommClosedError is an OSError
                if time.monotonic() > deadline:
                    raise ClusterLost(
                        f"could not send this run's model to the workers ({type(exc).__name__}): "
                        f"they left the cluster and none took it within {self.engine.connect_timeout:g} s; "
                        "nothing was stored. Restart the workers and run again.",
                        reason="no_workers_left") from None
                time.sleep(0.25)

    def _resend_if_lost(self) -> None:
        if self.future is not None and self.future.status != "finished" and self.payload:
            self.future.release()
            self.send(self.payload)

    def _watch(self, *, on_lost: Any = None) -> TaskWatch:
        watch = TaskWatch(self.client, self.engine.connect_timeout,
                          on_lost=on_lost or (lambda: None))
        self.watches.append(watch)
        return watch

    def _data(self, part: Partition) -> bytes | None:
        return partition_bytes(self.source, part, self.ref.header) if self.send_data else None

    # -- the passes ------------------------------------------------------------------------------
    def first_pass(self, parts: list[Partition], id_column: str) -> list[Plan]:
        """Record counts and ids of every partition; global row offsets and earlier ids per partition."""
        watch = self._watch()
        for p in parts:
            def make(attempt: int, p: Partition = p) -> Any:
                return self.client.submit(
                    scan_partition, self.ref, p, id_column, self._data(p),
                    pure=False, retries=self.engine.retries,
                    key=f"finflow-{self.id}-scan-{p.index}-{attempt}")
            watch.submit(p.index, make)
        found = dict(watch.completed())
        self.resubmitted += watch.resubmitted
        results = [found[p.index] for p in parts]
        return _plans(parts, results)

    def second_pass(self, plans: list[Plan]) -> Iterator[Part]:
        """Score partitions on the workers; yield them in partition order as they arrive."""
        watch = self._watch(on_lost=self._resend_if_lost)
        threads = max(sum(self.client.nthreads().values()), 1)
        window = self.engine.window or 2 * threads
        todo = iter(plans)
        ready: dict[int, PartitionResult] = {}

        def submit_next() -> None:
            plan = next(todo, None)
            if plan is None:
                return

            def make(attempt: int, plan: Plan = plan) -> Any:
                assert self.payload is not None
                p = plan.partition
                return self.client.submit(
                    process_partition, self.future, self.payload.ref, self.ref, plan, self._data(p),
                    pure=False, retries=self.engine.retries,
                    key=f"finflow-{self.id}-score-{p.index}-{attempt}")
            watch.submit(plan.partition.index, make)

        for _ in range(window):
            submit_next()
        next_index = 0
        for index, result in watch.completed():
            ready[index] = result
            while next_index in ready:
                part = ready.pop(next_index)
                next_index += 1
                yield Part(part.chunk, part.scored, part.drift, part.timings)
                submit_next()  # a slot is free once a result is stored
        self.resubmitted += watch.resubmitted

    # -- after -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel what is left, release the payload, drop this run's engines on the workers."""
        for watch in self.watches:
            watch.cancel()
        if self.client is None or self.client.status != "running":
            return
        try:
            if self.future is not None:
                self.future.release()
            if self.payload is not None:
                self.client.run(forget, self.payload.key, on_error="return")
        except Exception:  # noqa: BLE001 - best effort on a cluster that may be gone
            pass


def _plans(parts: list[Partition], results: list[tuple[int, pd.DataFrame]]) -> list[Plan]:
    """Global row offsets and, per partition, the first rows of its ids seen earlier."""
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
        plans.append(Plan(p, int(offsets[i]), dict(zip(seen["id"], seen["row"].astype(int), strict=True))))
    return plans
