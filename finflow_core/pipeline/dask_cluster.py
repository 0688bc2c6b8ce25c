"""The driver's side of a Dask cluster: connecting with clear errors, and watching a run's tasks.

Connecting never shows a traceback: an address is checked before it is used (an ``http://``
address is the dashboard's, not the scheduler's), the host is looked up, the port is tried
and the scheduler is asked who it is, each within ``connect_timeout`` seconds; then the run
waits up to the same time for a worker. Each failure is one :class:`ClusterError` (exit 19)
that says what to do.

:class:`TaskWatch` waits for a pass's tasks while it watches the cluster: a task lost with
its worker (or whose input data was lost with every copy) is submitted again, up to
``attempts`` times, after the caller's ``on_lost`` hook has re-sent what was lost; when the
cluster has no worker for ``connect_timeout`` seconds, or the scheduler goes away, the run
stops with :class:`ClusterLost` (exit 20) and, because the store writes a batch in one
transaction, nothing is stored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from finflow_core.errors import ClusterError, ClusterLost, FinFlowError
from finflow_core.pipeline.dask_tasks import Refused

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_PORT = 8786
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
#: Submissions of one partition before the run gives up (a worker lost each time).
ATTEMPTS = 4
POLL = 0.5


# -- addresses and connecting ------------------------------------------------------------------

def check_address(address: str) -> str:
    """The scheduler address with its scheme (``tcp://`` by default), or a ClusterError."""
    text = address.strip()
    if not text:
        raise ClusterError("no scheduler address given: pass --scheduler tcp://HOST:8786, or "
                           "leave it out to start a local cluster", reason="bad_address")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        host = rest.split("/", 1)[0].rsplit(":", 1)[0] or "HOST"
        raise ClusterError(
            f"{address} is a web address (the Dask dashboard's), not the scheduler's: use "
            f"tcp://{host}:{DEFAULT_PORT} (the port `dask scheduler` prints as "
            "'Scheduler at')", reason="bad_address", address=address,
        )
    if scheme not in SCHEMES:
        raise ClusterError(
            f"{address}: unknown address scheme {scheme!r}; a Dask scheduler's address looks "
            f"like tcp://HOST:{DEFAULT_PORT} (or tls://HOST:{DEFAULT_PORT} with TLS)",
            reason="bad_address", address=address,
        )
    return f"{scheme}://{rest}"


def probe_scheduler(address: str, timeout: float) -> dict[str, Any]:
    """Find the host, try the port and ask the scheduler who it is, each within ``timeout``."""
    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme == "tls":
        _check_tls(address)
    if scheme in ("tcp", "tls", "ws", "wss"):
        try:
            host, port = parse_host_port(location, default_port=DEFAULT_PORT)
        except ValueError as exc:
            raise ClusterError(f"{address}: not a HOST:PORT address ({exc})", reason="bad_address",
                               address=address) from None
        _try_port(address, host, port, timeout)
    try:
        identity = _run_apart(_identity(address, timeout))
    except Exception as exc:  # noqa: BLE001 - whatever answers, it did not answer as Dask does
        what = "no reply" if isinstance(exc, TimeoutError) else "no Dask reply"
        raise ClusterError(
            f"something answers at {address} but it is not a Dask scheduler ({what} within "
            f"{timeout:g} s: {type(exc).__name__}). Is it the dashboard's port? The scheduler "
            f"listens on {DEFAULT_PORT} unless started with --port."
            + (" A scheduler started with --protocol tls needs a tls:// address." if scheme == "tcp" else ""),
            reason="not_a_scheduler", address=address,
        ) from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise ClusterError(f"{address} is a Dask {identity.get('type', 'process')}, not the "
                           "scheduler: pass the scheduler's address", reason="not_a_scheduler",
                           address=address)
    return identity


def _run_apart(coroutine: Any) -> Any:
    """Run ``coroutine`` on its own loop in its own thread.

    The caller may already have an event loop running in this thread (a Streamlit script, a
    Playwright session in the same process), where ``asyncio.run`` refuses to start.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dask-probe") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _check_tls(address: str) -> None:
    """A tls:// address needs this machine's certificate in Dask's configuration."""
    from distributed.security import Security

    sec = Security()
    missing = [name for name, value in (("ca-file", sec.tls_ca_file), ("client.cert", sec.tls_client_cert))
               if not value]
    if missing:
        raise ClusterError(
            f"{address} is a TLS address but Dask's TLS settings are missing here "
            f"({', '.join('distributed.comm.tls.' + m for m in missing)}): set "
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE, DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT and "
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY (docs/SCALE_OUT.md, Security)",
            reason="tls_not_configured", address=address,
        )


def _try_port(address: str, host: str, port: int, timeout: float) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ClusterError(f"unknown host {host!r} in the scheduler address {address} "
                           f"({exc.strerror})", reason="unknown_host", address=address) from None
    family, kind, proto, _, sockaddr = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
    except ConnectionRefusedError:
        raise ClusterError(
            f"nothing is listening at {address}: start the scheduler (`dask scheduler --host "
            f"{host} --port {port}`) or check the address", reason="not_listening", address=address,
        ) from None
    except TimeoutError:
        raise ClusterError(
            f"no answer from {address} within {timeout:g} s: the host is down or a firewall drops "
            "the connection (raise --connect-timeout for a slow network)",
            reason="no_answer", address=address,
        ) from None
    except OSError as exc:
        raise ClusterError(f"cannot reach {address}: {exc.strerror or exc}", reason="unreachable",
                           address=address) from None


async def _identity(address: str, timeout: float) -> Any:
    from distributed.core import rpc
    from distributed.security import Security

    r = rpc(address, timeout=timeout, connection_args=Security().get_connection_args("client"))
    try:
        return await asyncio.wait_for(r.identity(), timeout)
    finally:
        await r.close_rpc()


def connect(address: str, timeout: float) -> Any:
    """A Client of the scheduler at ``address`` that has at least one worker."""
    from distributed import Client

    address = check_address(address)
    identity = probe_scheduler(address, timeout)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot connect to the scheduler at {address}: {exc}",
                           reason="not_listening", address=address) from None
    if not identity.get("workers"):
        wait_for_workers(client, timeout, address)
    return client


def wait_for_workers(client: Any, timeout: float, address: str = "") -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise ClusterError(
            f"the scheduler at {address or client.scheduler.address} has no workers: none joined "
            f"within {timeout:g} s. Start some with `dask worker {address or 'tcp://HOST:8786'}` "
            "(or raise --connect-timeout).", reason="no_workers", address=address,
        ) from None


class Cluster:
    """A Client for ``scheduler`` (an address, a Client, or None for a LocalCluster), closed
    after use unless the caller passed it in."""

    def __init__(self, scheduler: Any, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.scheduler = scheduler
        self.timeout = timeout
        self.owned: list[Any] = []

    def __enter__(self) -> Any:
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            return self.scheduler  # a Client given by the caller
        if self.scheduler:
            client = connect(self.scheduler, self.timeout)
            self.owned = [client]
            return client
        cluster, client = local_cluster()
        self.owned = [client, cluster]
        return client

    def __exit__(self, *exc: Any) -> None:
        for x in self.owned:
            try:
                x.close()
            except Exception:  # noqa: BLE001 - closing a broken cluster must not hide the error
                logging.getLogger(__name__).debug("closing %r failed", x, exc_info=True)


def local_cluster(workers: int | None = None) -> tuple[Any, Any]:
    """A LocalCluster for one run: one single-threaded worker process per core, everything
    on loopback, no dashboard, its HTTP endpoint on a free port (never 8787)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
        host="127.0.0.1", dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
        silence_logs=logging.ERROR,
    )
    return cluster, Client(cluster, set_as_default=False)


# -- watching a pass ------------------------------------------------------------------------------

class TaskWatch:
    """The tasks of one pass, by tag (a partition index), resubmitted when the cluster loses them."""

    def __init__(self, client: Any, timeout: float, *, on_lost: Callable[[], None] = lambda: None,
                 attempts: int = ATTEMPTS) -> None:
        self.client = client
        self.timeout = timeout
        self.on_lost = on_lost
        self.attempts = attempts
        self.makers: dict[int, Callable[[int], Any]] = {}
        self.futures: dict[int, Any] = {}
        self.tries: dict[int, int] = {}
        self.resubmitted = 0
        self._done: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._no_workers_since: float | None = None

    def submit(self, tag: int, make: Callable[[int], Any]) -> None:
        """Submit ``make(attempt)`` (a Future) for ``tag``."""
        self.makers[tag] = make
        self.tries[tag] = self.tries.get(tag, 0) + 1
        fut = make(self.tries[tag])
        self.futures[tag] = fut
        fut.add_done_callback(lambda f, tag=tag: self._done.put((tag, f)))

    @property
    def pending(self) -> int:
        return len(self.futures)

    def completed(self) -> Iterator[tuple[int, Any]]:
        """(tag, result) of each task as it finishes; lost tasks are submitted again."""
        while self.futures:
            try:
                tag, fut = self._done.get(timeout=POLL)
            except queue.Empty:
                self._check_cluster()
                continue
            if self.futures.get(tag) is not fut:
                continue  # an earlier attempt's future
            result = self._outcome(tag, fut)
            if result is _LOST:
                continue
            del self.futures[tag]
            fut.release()
            yield tag, result

    def _outcome(self, tag: int, fut: Any) -> Any:
        status = fut.status
        try:
            if status == "finished":
                result = fut.result()
                if isinstance(result, Refused):
                    raise result.error
                return result
            exc = fut.exception() if status == "error" else None
        except FinFlowError:
            raise
        except Exception as error:  # noqa: BLE001 - a finished result can be lost before it arrives
            if not _is_cancelled(error):
                raise
            exc = None
        if isinstance(exc, FinFlowError):
            raise exc
        if exc is not None and type(exc).__name__ == "KilledWorker":
            raise ClusterLost(
                f"partition {tag} was running on every worker that died during the run "
                f"({exc}); the workers may be running out of memory: give them more, or run "
                "with smaller partitions. Nothing was stored.", reason="killed_worker",
                partition=tag,
            ) from None
        if exc is not None:
            raise exc
        # cancelled or lost: its worker, or the only copy of its input, went away
        self._resubmit(tag)
        return _LOST

    def _resubmit(self, tag: int) -> None:
        if self.tries[tag] >= self.attempts:
            raise ClusterLost(
                f"the cluster lost partition {tag} {self.tries[tag]} times (workers leaving "
                "during the run); nothing was stored. Check the workers' logs and run again.",
                reason="lost_tasks", partition=tag,
            )
        self._wait_for_a_worker()
        self.on_lost()
        self.resubmitted += 1
        self.submit(tag, self.makers[tag])

    def _wait_for_a_worker(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._workers():
            if time.monotonic() > deadline:
                raise self._all_gone()
            time.sleep(POLL)

    def _check_cluster(self) -> None:
        if self._workers():
            self._no_workers_since = None
            return
        now = time.monotonic()
        self._no_workers_since = self._no_workers_since or now
        if now - self._no_workers_since > self.timeout:
            raise self._all_gone()

    def _workers(self) -> int:
        if self.client.status not in ("running", "connecting"):
            raise ClusterLost("the connection to the Dask scheduler was closed during the run; "
                              "nothing was stored", reason="scheduler_lost")
        try:
            return len(self.client.nthreads())
        except (OSError, TimeoutError) as exc:
            raise ClusterLost(f"lost the connection to the Dask scheduler during the run ({exc}); "
                              "nothing was stored", reason="scheduler_lost") from None

    def _all_gone(self) -> ClusterLost:
        return ClusterLost(
            f"every worker left the cluster and none came back within {self.timeout:g} s, so the "
            "run could not finish; nothing was stored. Restart the workers and run again.",
            reason="no_workers_left",
        )

    def cancel(self) -> None:
        """Cancel what is still running (the run stopped early)."""
        if self.futures:
            with contextlib.suppress(Exception):  # best effort on a cluster that may be gone
                self.client.cancel(list(self.futures.values()))
            self.futures.clear()


_LOST = object()


def _is_cancelled(error: BaseException) -> bool:
    """Dask's FutureCancelledError (and asyncio's / concurrent.futures' CancelledError)."""
    return any(c.__name__ in ("CancelledError", "FutureCancelledError") for c in type(error).__mro__)
