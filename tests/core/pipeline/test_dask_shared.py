"""Dask runs on a shared cluster: isolated per run, and surviving lost workers.

Two installations with different models run at the same time on one cluster and each
stores exactly what its own single-process run stores (the issue's finding: home B's rows
were scored with home A's model). Workers are killed in the middle of a run (one of them;
all of them, so the only copies of the model are lost; all of them for good) and the run
either completes with the single-process result or fails with one message, exit code 20,
and nothing stored.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dask_helpers import (
    StandaloneCluster,
    assert_same_decisions,
    batches_stored,
    fresh_store,
    run,
    shared_home,
    stored,
    worker_pids,
)

from finflow_core.errors import ClusterError, ClusterLost
from finflow_core.lending.config import Config
from finflow_core.lending.synthetic import generate_applications
from finflow_core.pipeline.dask_cluster import local_cluster
from finflow_core.pipeline.dask_engine import DaskEngine
from finflow_core.pipeline.dask_tasks import Payload, cached_keys, engine_for
from finflow_core.pipeline.local import LocalEngine

distributed = pytest.importorskip("distributed")

FIXED_NAMES = {"token", "bundle", "config", "strategy", "payload", "model"}


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory, small_raw: dict[str, Any]) -> dict[str, tuple[Config, Path]]:
    """Two installations whose champions differ (other history, other trees)."""
    return {
        "A": shared_home(small_raw, seed=11, trees=60),
        "B": shared_home(small_raw, seed=23, trees=15, history_rows=2000),
    }


@pytest.fixture(scope="module")
def batch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("shared_batches")
    files = {"A": folder / "a_week.csv", "B": folder / "b_week.csv"}
    generate_applications(6000, seed=41).drop(columns="default").to_csv(files["A"], index=False)
    generate_applications(2000, seed=42).drop(columns="default").to_csv(files["B"], index=False)
    return files


@pytest.fixture(scope="module")
def single(homes: dict[str, tuple[Config, Path]], batch_files: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each installation's own single-process result for each batch."""
    folder = tmp_path_factory.mktemp("single_runs")
    out: dict[str, dict[str, Any]] = {}
    for home, (config, db) in homes.items():
        for name, path in batch_files.items():
            store = fresh_store(db, folder, f"{home}-{name}")
            summary = run(store, path, config, LocalEngine(chunk_rows=1500))
            out[f"{home}{name}"] = {"summary": summary, "stored": stored(store, summary.batch_id)}
            store.close()
    return out


@pytest.fixture
def cluster() -> Any:
    """A fresh 2-worker LocalCluster (worker processes under nannies) for a test that kills workers."""
    c, client = local_cluster(2)
    yield c, client
    client.close()
    c.close()


def same_as_single(result: dict[str, Any], summary: Any, store: Any) -> None:
    a, b = result["stored"], stored(store, summary.batch_id)
    d1, d2 = result["summary"].to_dict(), summary.to_dict()
    d1.pop("timings"), d2.pop("timings")
    assert d1 == d2
    assert_same_decisions(a["apps"], b["apps"])
    assert a["quarantine"] == b["quarantine"]
    assert tuple(a["drift"]) == tuple(b["drift"])


def test_the_two_models_differ(single: dict[str, dict[str, Any]]) -> None:
    """Otherwise the isolation test below could not tell them apart."""
    a = np.array([x["probability"] for x in single["AB"]["stored"]["apps"]])
    b = np.array([x["probability"] for x in single["BB"]["stored"]["apps"]])
    assert len(a) == len(b) == 2000
    assert np.abs(a - b).max() > 0.05 and (np.abs(a - b) > 1e-6).mean() > 0.9


def test_two_installations_at_once_each_score_with_their_own_model(
    homes: dict[str, tuple[Config, Path]], batch_files: dict[str, Path],
    single: dict[str, dict[str, Any]], cluster: Any, tmp_path: Path,
) -> None:
    """A runs its 6,000 rows and, while it runs, B its 2,000 and A's file too, on one scheduler
    (each run with its own client, as separate installations would)."""
    local, client = cluster
    address = local.scheduler_address
    keys_seen: list[str] = []

    def keys(dask_scheduler: Any) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks]

    jobs = [("A", "A"), ("B", "B"), ("B", "A")]
    stores = {f"{h}{n}": fresh_store(homes[h][1], tmp_path, f"{h}-{n}") for h, n in jobs}
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def job(home: str, name: str) -> None:
        try:
            def progress(done: int, total: int) -> None:
                keys_seen.extend(client.run_on_scheduler(keys))
            start.wait()
            results[home + name] = run(stores[home + name], batch_files[name], homes[home][0],
                                       DaskEngine(address, partitions=4), progress=progress)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for tag, summary in results.items():
        same_as_single(single[tag], summary, stores[tag])
    assert results["AA"].model_version != results["BB"].model_version
    # every key was made by a run (its id in it); none is a fixed name shared between runs
    assert keys_seen and all(k.startswith("finflow-") for k in keys_seen)
    assert not FIXED_NAMES & set(keys_seen)
    run_ids = {k.split("-")[1] for k in keys_seen}
    assert len(run_ids) >= 2  # the runs overlapped on the scheduler and kept apart
    for s in stores.values():
        s.close()


def test_a_worker_refuses_a_payload_whose_hash_differs(homes: dict[str, tuple[Config, Path]]) -> None:
    """The worker-side check itself: a payload that is not the one the task expects is refused,
    never used (and the engine cache is keyed by the run's payload, not a fixed name)."""
    from finflow_core.services.context import Context
    from finflow_core.services.scoring_engines import champion_engine
    from finflow_core.store import open_store

    engines = {}
    for home, (config, db) in homes.items():
        store = open_store(f"sqlite:///{db}")
        engines[home] = champion_engine(Context(config, store), explain=False)
        store.close()
    a = Payload.build("run-a", engines["A"].bundle, engines["A"].config, engines["A"].strategy)
    b = Payload.build("run-b", engines["B"].bundle, engines["B"].config, engines["B"].strategy)
    assert a.key != b.key and a.sha256 != b.sha256 and a.key.startswith("finflow-run-a-payload-")
    with pytest.raises(ClusterError, match="another run's model payload") as caught:
        engine_for(a, b.ref)  # a task of run B handed run A's payload
    assert caught.value.exit_code == 19 and caught.value.reason == "payload_mismatch"
    forged = Payload(b.key, b.sha256, a.blob)  # B's name and hash over A's bytes
    with pytest.raises(ClusterError, match="another run's model payload"):
        engine_for(forged, b.ref)
    assert engine_for(b, b.ref).bundle.version == engines["B"].bundle.version
    assert engine_for(a, a.ref).bundle.version == engines["A"].bundle.version
    assert {a.key, b.key} <= set(cached_keys())


def _kill_after_first_part(kill: Any) -> Any:
    """A progress callback that calls ``kill()`` once the first part is stored."""
    done = {"killed": False}

    def progress(rows: int, total: int) -> None:
        if not done["killed"]:
            done["killed"] = True
            kill()
    return progress


def _sigkill_workers(client: Any, kills: list[dict[str, int]], *, every: bool) -> Any:
    def kill() -> None:
        pids = worker_pids(client)
        chosen = dict(sorted(pids.items())[: None if every else 1])
        for pid in chosen.values():
            os.kill(pid, signal.SIGKILL)
        kills.append(chosen)
    return kill


def test_a_worker_killed_mid_run_changes_nothing(
    homes: dict[str, tuple[Config, Path]], batch_files: dict[str, Path],
    single: dict[str, dict[str, Any]], cluster: Any, tmp_path: Path,
) -> None:
    local, client = cluster
    config, db = homes["A"]
    store = fresh_store(db, tmp_path, "killed-one")
    kills: list[dict[str, int]] = []
    engine = DaskEngine(client, partitions=8, window=2, connect_timeout=20)
    summary = run(store, batch_files["A"], config, engine,
                  progress=_kill_after_first_part(_sigkill_workers(client, kills, every=False)))
    assert len(kills) == 1 and len(kills[0]) == 1
    assert summary.timings["partitions"] >= 7
    same_as_single(single["AA"], summary, store)
    store.close()


@pytest.mark.heavy
def test_every_worker_killed_mid_run_resends_the_model_and_completes(
    homes: dict[str, tuple[Config, Path]], batch_files: dict[str, Path],
    single: dict[str, dict[str, Any]], cluster: Any, tmp_path: Path,
) -> None:
    """Both workers die at once (their nannies start new ones): every copy of the broadcast
    payload is gone, so it is sent again and the lost partitions resubmitted."""
    local, client = cluster
    config, db = homes["B"]
    store = fresh_store(db, tmp_path, "killed-all")
    kills: list[dict[str, int]] = []
    engine = DaskEngine(client, partitions=8, window=2, connect_timeout=30)
    summary = run(store, batch_files["A"], config, engine,
                  progress=_kill_after_first_part(_sigkill_workers(client, kills, every=True)))
    assert len(kills[0]) == 2
    assert summary.timings["resubmitted"] >= 1
    same_as_single(single["BA"], summary, store)
    store.close()


@pytest.mark.heavy
def test_a_cluster_whose_workers_are_gone_for_good_fails_clearly_and_stores_nothing(
    homes: dict[str, tuple[Config, Path]], batch_files: dict[str, Path], tmp_path: Path,
) -> None:
    """A standalone cluster (`dask scheduler`, `dask worker`) whose every worker and nanny is
    killed after the first part: no worker comes back within the timeout."""
    config, db = homes["A"]
    store = fresh_store(db, tmp_path, "gone")
    before = batches_stored(store)
    with StandaloneCluster(tmp_path) as cluster:
        cluster.wait_for_workers()
        engine = DaskEngine(cluster.address, partitions=8, window=2, connect_timeout=3)
        started = time.monotonic()
        with pytest.raises(ClusterLost) as caught:
            run(store, batch_files["A"], config, engine,
                progress=_kill_after_first_part(cluster.kill_workers))
        assert time.monotonic() - started < 90
    assert caught.value.exit_code == 20 and caught.value.reason == "no_workers_left"
    assert "nothing was stored" in caught.value.message
    assert batches_stored(store) == before
    store.close()
