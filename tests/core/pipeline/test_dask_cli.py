"""`finflow weekly-run --engine dask`: clear cluster errors with exit codes, paths, progress.

Wrong addresses (a web address, nothing listening, an unknown host, something that is not
a scheduler, a scheduler without workers) each end in one line and exit 19 within the
connect timeout, never a traceback. Workers started in another folder get the absolute
path; workers that cannot read the file, or read another file at the same path, are named
before any work (or the driver sends the data with --send-data). Progress lines are
printed with Dask and end at the real record count.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from dask_helpers import (
    StandaloneCluster,
    assert_same_decisions,
    batches_stored,
    can_unshare,
    shared_home,
    stored,
)

from finflow_core.cli import main
from finflow_core.lending.config import Config
from finflow_core.lending.synthetic import generate_applications
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.store import Store, open_store

distributed = pytest.importorskip("distributed")

ROWS = 1200


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_raw: dict[str, Any]) -> dict[str, Any]:
    """An installation on disk (config file, trained champion, an analyst) for the command."""
    import shutil

    root = tmp_path_factory.mktemp("cli_home")
    config, shared_db = shared_home(small_raw)
    db = root / "base.db"
    shutil.copy(shared_db, db)  # users are added to this installation's own copy
    raw = copy.deepcopy(small_raw)
    raw["model"]["cv_folds"] = 3
    raw["paths"] = {"models_dir": str(config.paths.models_dir), "data_dir": str(config.paths.data_dir),
                    "database_url": f"sqlite:///{db}"}
    config_path = root / "finflow.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    store = open_store(f"sqlite:///{db}")
    admin = Gate(Context(config, store)).create_first_admin("root", "admin pass phrase 123")
    admin.users.add("ana", "analyst pass phrase 1", ["analyst"])
    store.close()
    batch = root / "batches" / "week.csv"
    batch.parent.mkdir()
    generate_applications(ROWS, seed=31).drop(columns="default").to_csv(batch, index=False)
    return {"config": config, "config_path": config_path, "db": db, "batch": batch, "root": root}


@pytest.fixture
def cli(home: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The command on a fresh copy of the installation's store."""
    import shutil

    db = tmp_path / "run.db"
    shutil.copy(home["db"], db)
    raw = yaml.safe_load(home["config_path"].read_text())
    raw["paths"]["database_url"] = f"sqlite:///{db}"
    config_path = tmp_path / "finflow.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("FINFLOW_CONFIG", str(config_path))
    monkeypatch.setenv("FINFLOW_USER", "ana")
    monkeypatch.setenv("FINFLOW_PASSWORD", "analyst pass phrase 1")
    return {**home, "run_db": db}


def weekly(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(["weekly-run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err, time.monotonic() - started


def run_store(cli: dict[str, Any]) -> Store:
    return open_store(f"sqlite:///{cli['run_db']}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_one_clear_line(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.startswith("finflow: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- wrong addresses -------------------------------------------------------------------------------

def test_a_web_address_says_use_tcp(cli: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err, took = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                "--scheduler", "http://127.0.0.1:8787/status")
    assert code == 19 and took < 30
    assert_one_clear_line(err, "web address", "tcp://127.0.0.1:8786")
    with run_store(cli) as store:
        assert batches_stored(store) == 0


def test_a_tls_address_without_tls_settings_says_which_are_missing(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without this machine's certificate Dask failed with a TypeError, read as "not a scheduler"."""
    for name in ("CA_FILE", "CLIENT__CERT", "CLIENT__KEY"):
        monkeypatch.delenv(f"DASK_DISTRIBUTED__COMM__TLS__{name}", raising=False)
    code, _, err, took = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                "--scheduler", f"tls://127.0.0.1:{free_port()}")
    assert code == 19 and took < 20
    assert_one_clear_line(err, "TLS address", "distributed.comm.tls.ca-file",
                          "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT")


def test_nothing_listening_and_unknown_host_fail_at_once(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err, took = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert code == 19 and took < 20  # the issue: 30 s, then a 62-line traceback
    assert_one_clear_line(err, "nothing is listening", "dask scheduler")
    code, _, err, _ = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                             "--scheduler", "tcp://no-such-host.invalid:8786")
    assert code == 19
    assert_one_clear_line(err, "unknown host 'no-such-host.invalid'")


@contextlib.contextmanager
def web_server() -> Iterator[int]:
    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_that_is_not_a_scheduler_times_out_with_the_connect_timeout(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    """A tcp:// address of a web server (say the dashboard's port): it never answers the
    Dask handshake; the run stops after --connect-timeout instead of hanging."""
    with web_server() as port:
        code, _, err, took = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                    "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "2")
    assert code == 19 and took < 20
    assert_one_clear_line(err, "not a Dask scheduler", "8786")


def test_a_scheduler_without_workers_waits_the_timeout_then_says_so(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"dashboard": False}) as empty:
        code, _, err, took = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                    "--scheduler", empty.scheduler_address, "--connect-timeout", "2")
    assert code == 19 and 2 <= took < 25  # the issue: 33 s, then TimeoutError
    assert_one_clear_line(err, "has no workers", "within 2 s", "dask worker")


def test_the_scheduler_is_recognised_from_a_thread_with_a_running_event_loop() -> None:
    """A Playwright or Streamlit session in the same process leaves a loop running; the probe
    must still ask the scheduler who it is (CI once read "not a Dask scheduler: RuntimeError")."""
    import asyncio

    from distributed import LocalCluster

    from finflow_core.pipeline.dask_cluster import probe_scheduler

    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"dashboard": False}) as empty:
        async def inside_a_loop() -> dict[str, Any]:
            return probe_scheduler(empty.scheduler_address, timeout=10)

        try:  # after the browser tests a loop already runs in this thread (Playwright's)
            running = asyncio.get_running_loop() is not None
        except RuntimeError:
            running = False
        # none running: run one, as a Streamlit script would have
        identity = (probe_scheduler(empty.scheduler_address, timeout=10) if running
                    else asyncio.run(inside_a_loop()))
    assert identity["type"] == "Scheduler"


def test_dask_options_need_the_dask_engine(cli: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err, _ = weekly(capsys, "--data", str(cli["batch"]), "--scheduler", "tcp://x:8786")
    assert code == 2
    assert_one_clear_line(err, "--scheduler needs --engine dask")
    with pytest.raises(SystemExit) as caught:
        main(["weekly-run", "--data", str(cli["batch"]), "--engine", "dask", "--connect-timeout", "0"])
    assert caught.value.code == 2
    capsys.readouterr()


@pytest.mark.heavy
# -- paths, progress, storage the workers cannot see -------------------------------------------------

def test_relative_data_on_workers_started_elsewhere_with_progress(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Workers of a standalone cluster run in `/`; the command gets `batches/week.csv`
    relative to its own folder; progress lines come through run_batch and end at the records."""
    with StandaloneCluster(tmp_path, cwd="/") as cluster:
        cluster.wait_for_workers()
        monkeypatch.chdir(cli["root"])
        code, out, err, _ = weekly(capsys, "--data", "batches/week.csv", "--engine", "dask",
                                   "--scheduler", cluster.address, "--partitions", "3", "--progress",
                                   "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows_in"] == ROWS
    lines = [line.strip() for line in err.splitlines() if "rows (" in line]
    assert len(lines) >= 3  # one per partition stored
    assert lines[-1] == f"{ROWS:,} / ~{ROWS:,} rows (100%)"  # not "~1,201"


@pytest.mark.heavy
@pytest.mark.skipif(not can_unshare(), reason="needs unshare --mount (root) for a worker's own disk view")
def test_workers_that_cannot_read_the_file_are_named_and_send_data_works(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """Each worker has its own mount namespace with an empty tmpfs over the batch folder (the
    file is not on storage they share): the pre-flight names them, nothing is scored or stored;
    with --send-data the same run completes and stores what the local engine stores."""
    folder = cli["batch"].parent
    with StandaloneCluster(tmp_path, setup=f"mount -t tmpfs none {folder}", private_mounts=True) as cluster:
        cluster.wait_for_workers()
        code, _, err, took = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                    "--scheduler", cluster.address)
        assert code == 19 and took < 60
        assert_one_clear_line(err, "2 of 2 workers", f"cannot read {cli['batch']}", "--send-data",
                              "tcp://127.0.0.1:")
        with run_store(cli) as store:
            assert batches_stored(store) == 0
        code, out, err, _ = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                   "--scheduler", cluster.address, "--send-data", "--partitions", "3",
                                   "--json")
    assert code == 0, err
    dask_summary = json.loads(out)
    code, out, err, _ = weekly(capsys, "--data", str(cli["batch"]), "--json")
    assert code == 0 and json.loads(out)["already_stored"] is True  # the same file: stored once
    with run_store(cli) as store:
        via_dask = stored(store, dask_summary["batch_id"])
    local = _local_result(cli, tmp_path)
    assert_same_decisions(local["apps"], via_dask["apps"])


def _local_result(cli: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    import shutil

    from dask_helpers import run

    db = tmp_path / "local.db"
    shutil.copy(cli["db"], db)
    config: Config = cli["config"]
    with open_store(f"sqlite:///{db}") as store:
        summary = run(store, cli["batch"], config)
        return stored(store, summary.batch_id)


@pytest.mark.heavy
@pytest.mark.skipif(not can_unshare(), reason="needs unshare --mount (root) for a worker's own disk view")
def test_a_worker_reading_another_file_at_the_same_path_is_refused(
    cli: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """The worker's mount holds an older copy of week.csv: same path, other bytes."""
    folder, name = cli["batch"].parent, cli["batch"].name
    other = tmp_path / "older.csv"
    generate_applications(ROWS, seed=99).drop(columns="default").to_csv(other, index=False)
    setup = f"mount -t tmpfs none {folder} && cp {other} {folder / name}"
    with StandaloneCluster(tmp_path, workers=1, setup=setup, private_mounts=True) as cluster:
        cluster.wait_for_workers()
        code, _, err, _ = weekly(capsys, "--data", str(cli["batch"]), "--engine", "dask",
                                 "--scheduler", cluster.address)
    assert code == 19
    assert_one_clear_line(err, "1 of 1 workers", "is not the file this machine reads")
    with run_store(cli) as store:
        assert batches_stored(store) == 0


def test_the_local_cluster_listens_on_loopback_only_and_never_on_8787() -> None:
    """The tests warned "Port 8787 is already in use": the run's LocalCluster had a dashboard
    on the fixed port (and on every interface)."""
    import psutil

    from finflow_core.pipeline.dask_cluster import local_cluster

    with socket.socket() as taken:
        with contextlib.suppress(OSError):  # hold 8787 if it is free: a second user's dashboard
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        cluster, client = local_cluster(2)
        try:
            me = psutil.Process()
            listening = [c.laddr for p in [me, *me.children(recursive=True)]
                         for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
            assert len(client.nthreads()) == 2
        finally:
            client.close()
            cluster.close()
    ours = [a for a in listening if a.port != 8787 or a.ip != "127.0.0.1"]
    assert len(ours) >= 4  # scheduler, its HTTP endpoint, and each worker
    assert all(a.ip == "127.0.0.1" for a in ours), ours
    assert all(a.port != 8787 for a in ours)
