"""Reading the next chunk of a long query while the caller works on the one before."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, each one made in a worker thread while the caller uses the one before.

    For a long export: the database finds the next chunk (SQLite outside the GIL, PostgreSQL
    in its own process) while this one is converted and written (Arrow, also outside the
    GIL). At most three items exist at once (the caller's, one waiting, one being made). An
    error in the worker is raised here; a caller that stops early stops the worker after
    its current item.
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(done: bool, value: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                ready.put((done, value), timeout=0.1)
                return True
        return False

    def work() -> None:
        try:
            for item in items:
                if not hand_over(False, item):
                    return
            hand_over(True, None)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            hand_over(True, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="finflow-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            done, value = ready.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        worker.join()
