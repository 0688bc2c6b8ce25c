"""docs/SCALE_OUT.md's commands, run as written (on loopback): every port they open is on the
interface they name (the issue: started as the docs suggested, the scheduler, its dashboard
and the workers listened on every interface), and FinFlow connects to what they start."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

DOC = Path(__file__).resolve().parents[3] / "docs" / "SCALE_OUT.md"
DASK = str(Path(sys.executable).with_name("dask"))
SCHEDULER_HOST, WORKER_HOST = "10.0.0.5", "10.0.0.6"


def documented(kind: str) -> list[str]:
    """The one documented command line that starts ``dask <kind>``."""
    lines = [x.strip() for x in DOC.read_text().splitlines()
             if re.match(rf"^\S*dask {kind}\b", x.strip())]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_loopback(argv: list[str], ports: dict[str, int]) -> list[str]:
    out = [DASK, *argv[1:]]
    text = " ".join(shlex.quote(x) for x in out)
    for port, new in ports.items():
        text = re.sub(rf"\b{port}\b", str(new), text)
    text = text.replace(SCHEDULER_HOST, "127.0.0.1").replace(WORKER_HOST, "127.0.0.1")
    return shlex.split(text)


def listeners(pid: int) -> list[tuple[str, int]]:
    import psutil

    root = psutil.Process(pid)
    found = []
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            found += [(c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
    return found


def test_the_documented_commands_bind_only_the_named_interface(tmp_path: Path) -> None:
    scheduler_argv, worker_argv = documented("scheduler"), documented("worker")
    # what the documented lines must say, whatever else changes in them
    assert scheduler_argv[scheduler_argv.index("--host") + 1] == SCHEDULER_HOST
    assert scheduler_argv[scheduler_argv.index("--dashboard-address") + 1].startswith(SCHEDULER_HOST)
    assert worker_argv[worker_argv.index("--host") + 1] == WORKER_HOST
    assert worker_argv[worker_argv.index("--dashboard-address") + 1].startswith(WORKER_HOST)
    ports = {"8786": free_port(), "8787": free_port()}
    env = {**os.environ, "PYTHONPATH": str(DOC.parents[1]), "OMP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, name in ((scheduler_argv, "scheduler"), (worker_argv, "worker")):
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(on_loopback(argv, ports), cwd=tmp_path, stdout=log,
                                          stderr=subprocess.STDOUT, env=env, start_new_session=True))
            if name == "scheduler":
                time.sleep(1)
        from finflow_core.pipeline.dask_cluster import connect

        address = f"tcp://127.0.0.1:{ports['8786']}"
        deadline = time.monotonic() + 90
        client = None
        while client is None:
            try:
                client = connect(address, 10)
            except Exception:
                if time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "scheduler.log").read_text()
                                         + (tmp_path / "worker.log").read_text()) from None
                time.sleep(1)
        try:
            client.wait_for_workers(2, timeout=90)  # --nworkers 2
            assert sorted(client.nthreads().values()) == [1, 1]  # --nthreads 1
            found = {name: listeners(p.pid) for name, p in zip(("scheduler", "worker"), procs, strict=True)}
        finally:
            client.close()
    finally:
        for p in procs[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs[::-1]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
    assert ("127.0.0.1", ports["8786"]) in found["scheduler"]
    assert ("127.0.0.1", ports["8787"]) in found["scheduler"]  # the dashboard, where it was told
    assert len(found["worker"]) >= 5  # a nanny; two workers, each with its HTTP endpoint
    everything = found["scheduler"] + found["worker"]
    assert all(ip == "127.0.0.1" for ip, _ in everything), everything


@pytest.mark.heavy
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a throw-away CA")
def test_a_tls_cluster_as_documented_takes_finflow_with_its_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Section 6: scheduler and worker with --protocol tls and certificates; FinFlow connects
    through Dask's TLS settings, and is refused clearly without them."""
    from finflow_core.errors import ClusterError
    from finflow_core.pipeline.dask_cluster import connect

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=finflow-test-ca")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
        "-subj", "/CN=node")
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "node.pem", "-days", "1", "-extfile", "san.cnf")
    tls = ["--tls-ca-file", "ca.pem", "--tls-cert", "node.pem", "--tls-key", "node.key"]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(DOC.parents[1]), "OMP_NUM_THREADS": "1",
           "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    argv = [[DASK, "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port),
             "--dashboard-address", "127.0.0.1:0", *tls],
            [DASK, "worker", f"tls://127.0.0.1:{port}", "--host", "127.0.0.1",
             "--dashboard-address", "127.0.0.1:0", "--nthreads", "1", *tls]]
    procs = []
    try:
        for i, cmd in enumerate(argv):
            log = open(tmp_path / f"{i}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, start_new_session=True))
            time.sleep(2 if i == 0 else 0)
        address = f"tls://127.0.0.1:{port}"
        for name in ("CA_FILE", "CLIENT__CERT", "CLIENT__KEY"):
            monkeypatch.delenv(f"DASK_DISTRIBUTED__COMM__TLS__{name}", raising=False)
        with pytest.raises(ClusterError, match="TLS settings are missing") as refused:
            connect(address, 5)
        assert refused.value.exit_code == 19
        import dask

        settings = {"distributed.comm.tls.ca-file": str(tmp_path / "ca.pem"),
                    "distributed.comm.tls.client.cert": str(tmp_path / "node.pem"),
                    "distributed.comm.tls.client.key": str(tmp_path / "node.key")}
        with dask.config.set(settings):
            deadline = time.monotonic() + 60
            while True:
                try:
                    client = connect(address, 10)
                    break
                except ClusterError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            try:
                assert all(a.startswith("tls://127.0.0.1:") for a in client.nthreads())
                assert client.submit(sum, [1, 2, 3], pure=False).result(timeout=30) == 6
            finally:
                client.close()
    finally:
        for p in procs[::-1]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs[::-1]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
