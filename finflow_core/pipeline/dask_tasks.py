"""What runs on the Dask workers: a run's payload, the two passes, and the pre-flight check.

Every object a run sends is keyed by that run and checked by content: the model bundle,
config and strategy travel as one pickled :class:`Payload` under a key made of the run's
id and the payload's SHA-256, and each task carries the :class:`PayloadRef` it expects. A
worker hashes the payload before it builds a ScoringEngine from it and refuses one whose
hash differs, so two runs on one cluster (any number of installations) can never score
with each other's model. Workers keep no other state: the header bytes, partition plan and
partition digests come with each task.

A FinFlow refusal raised on a worker (a file that is not a batch, a file the worker cannot
read) comes back as a :class:`Refused` value, not an exception, so Dask does not retry it
(its retries are for workers that fail, not for answers that would be the same again).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TypeVar

import numpy as np
import pandas as pd

from finflow_core.errors import ClusterError, FinFlowError
from finflow_core.lending.config import Config
from finflow_core.lending.intake.validation import BatchValidator, ChunkResult
from finflow_core.lending.model.bundle import ModelBundle
from finflow_core.lending.scoring import DECISION_COLUMNS, ScoringEngine
from finflow_core.lending.strategy import Strategy
from finflow_core.pipeline.partitions import (
    FileRef,
    Partition,
    Plan,
    concat,
    read_partition,
    unreadable,
)

#: Libraries whose versions must match between this machine and every worker: the model is
#: unpickled and run there, and the quality gate reads cells there.
CHECKED_LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "shap", "joblib",
                     "xgboost", "pandera")
#: ScoringEngines a worker process keeps (most recent runs first): several concurrent runs
#: on one worker each keep theirs.
ENGINE_CACHE = 4
PROBE_BYTES = 1 << 16

T = TypeVar("T")


@dataclass(frozen=True)
class PayloadRef:
    """What a task expects: the run's payload key and its SHA-256."""

    key: str
    sha256: str


@dataclass(frozen=True)
class Payload:
    """One run's model bundle, config and strategy, pickled once (what is sent to the cluster)."""

    key: str
    sha256: str
    blob: bytes = b""

    @classmethod
    def build(cls, run_id: str, bundle: ModelBundle, config: Config, strategy: Strategy) -> Payload:
        blob = pickle.dumps((bundle, config, strategy), protocol=pickle.HIGHEST_PROTOCOL)
        digest = hashlib.sha256(blob).hexdigest()
        return cls(f"finflow-{run_id}-payload-{digest[:16]}", digest, blob)

    @property
    def ref(self) -> PayloadRef:
        return PayloadRef(self.key, self.sha256)

    def open(self, expected: PayloadRef) -> tuple[ModelBundle, Config, Strategy]:
        """The objects, after checking they are the ones the task expects."""
        actual = hashlib.sha256(self.blob).hexdigest()
        if self.key != expected.key or actual != expected.sha256:
            raise ClusterError(
                f"the worker received another run's model payload ({self.key}, sha256 "
                f"{actual[:12]}) instead of {expected.key} (sha256 {expected.sha256[:12]}); "
                "the partition was refused rather than scored with the wrong model",
                reason="payload_mismatch", expected=expected.key, received=self.key,
            )
        return pickle.loads(self.blob)  # noqa: S301 - the driver's own bundle, hash-checked


@dataclass
class PartitionResult:
    """What a worker sends back for one partition."""

    index: int
    chunk: ChunkResult
    scored: pd.DataFrame
    drift: dict[str, np.ndarray]
    timings: dict[str, float]


@dataclass
class Refused:
    """A FinFlow refusal raised on a worker, returned as a value (Dask retries exceptions)."""

    error: FinFlowError


# -- the worker's engines --------------------------------------------------------------------------

_ENGINES: OrderedDict[PayloadRef, ScoringEngine] = OrderedDict()
_LOCK = threading.Lock()


def engine_for(payload: Payload, expected: PayloadRef) -> ScoringEngine:
    """This run's ScoringEngine on this worker: built once per payload, after the hash check."""
    with _LOCK:
        engine = _ENGINES.get(expected)
        if engine is not None:
            _ENGINES.move_to_end(expected)
            return engine
    bundle, config, strategy = payload.open(expected)
    engine = ScoringEngine(bundle, config, strategy)
    with _LOCK:
        _ENGINES[expected] = engine
        while len(_ENGINES) > ENGINE_CACHE:
            _ENGINES.popitem(last=False)
    return engine


def forget(key: str) -> int:
    """Drop a finished run's engine from this worker (run on every worker at the end)."""
    with _LOCK:
        stale = [ref for ref in _ENGINES if ref.key == key]
        for ref in stale:
            del _ENGINES[ref]
    return len(stale)


def cached_keys() -> list[str]:
    with _LOCK:
        return [ref.key for ref in _ENGINES]


# -- the two passes ------------------------------------------------------------------------------

def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "a worker"


def _answer(fn: Callable[[], T], path: str) -> T | Refused:
    """Run ``fn``; a FinFlow refusal or an unreadable file comes back as a Refused value."""
    try:
        with warnings.catch_warnings():
            # scikit-learn notes that it runs one job inside a Dask worker: expected, not news
            warnings.filterwarnings("ignore", message="Inside a Dask worker")
            return fn()
    except OSError as exc:
        return Refused(unreadable(path, exc, worker=_worker_address()))
    except FinFlowError as exc:
        exc.details.setdefault("worker", _worker_address())
        return Refused(exc)


def scan_partition(ref: FileRef, part: Partition, id_column: str,
                   data: bytes | None = None) -> tuple[int, pd.DataFrame] | Refused:
    """First pass: the partition's record count and each id's first local row number."""
    def scan() -> tuple[int, pd.DataFrame]:
        n = 0
        ids, rows = [], []
        at = list(ref.header).index(id_column)
        for raw in read_partition(ref, part, data):
            n += len(raw.row_numbers) + len(raw.misshapen)
            if len(raw.frame):
                ids.append(raw.frame.iloc[:, at].astype(str).to_numpy())
                rows.append(np.asarray(raw.row_numbers, dtype=np.int64))
        frame = pd.DataFrame({
            "id": np.concatenate(ids) if ids else np.array([], dtype=object),
            "row": np.concatenate(rows) if rows else np.array([], dtype=np.int64),
        })
        return n, frame.drop_duplicates("id", keep="first")

    return _answer(scan, ref.path)


def process_partition(payload: Payload, expected: PayloadRef, ref: FileRef, plan: Plan,
                      data: bytes | None = None) -> PartitionResult | Refused:
    """Second pass: validate, score, route, explain and count drift bins of one partition."""
    def process() -> PartitionResult:
        engine = engine_for(payload, expected)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        raws = list(read_partition(ref, plan.partition, data))
        raw = raws[0] if len(raws) == 1 else concat(raws)
        raw.row_numbers = [r + plan.rows_before for r in raw.row_numbers]
        raw.misshapen = [(rn + plan.rows_before, line, cells) for rn, line, cells in raw.misshapen]
        timings["read"] = time.perf_counter() - t
        t = time.perf_counter()
        # ids of earlier partitions: the first occurrence wins, as in one process
        result = BatchValidator(engine.config, seen_ids=plan.seen_before).validate(raw)
        timings["validate"] = time.perf_counter() - t
        drift: dict[str, np.ndarray] = {}
        if len(result.valid):
            scored = engine.score(result.valid, result.row_numbers, timings=timings, drift=drift)
        else:  # nothing valid here: the models refuse an empty matrix
            scored = pd.DataFrame({c: pd.Series(dtype=object) for c in DECISION_COLUMNS})
        return PartitionResult(plan.partition.index, result, scored, drift, timings)

    return _answer(process, ref.path)


# -- the pre-flight check ----------------------------------------------------------------------------

def installation() -> dict[str, str | None]:
    """This process's Python, FinFlow and library versions."""
    import finflow_core

    found: dict[str, str | None] = {"python": platform.python_version(),
                                    "finflow": finflow_core.__version__}
    for name in CHECKED_LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def file_probe(path: str) -> tuple[int, str]:
    """Size and SHA-256 of the first and last 64 KiB: the same file, cheaply (a CSV's
    partitions are also hashed in full; a Parquet file's footer holds its metadata)."""
    size = os.path.getsize(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(PROBE_BYTES))
        fh.seek(max(size - PROBE_BYTES, 0))
        h.update(fh.read(PROBE_BYTES))
    return size, h.hexdigest()


def check_worker(path: str | None, probe: tuple[int, str] | None,
                 expected: dict[str, str | None]) -> list[str]:
    """What keeps this worker from taking part (empty: nothing). Run on every worker first."""
    problems = []
    found = installation()
    for name, version in expected.items():
        if version is not None and found.get(name) != version:
            problems.append(f"{name} {found.get(name) or 'not installed'} (this machine: {version})")
    if path is not None and probe is not None:
        try:
            if file_probe(path) != probe:
                problems.append(f"{path} on this worker is not the file this machine reads")
        except OSError as exc:
            problems.append(f"cannot read {path} ({exc.strerror or type(exc).__name__})")
    return problems
