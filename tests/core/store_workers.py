"""Work run in spawned processes by the store tests: imports only what it needs (fast start)."""

from __future__ import annotations

import random
from typing import Any


def decide_in_process(url: str, officer: str, cases: list[int], seed: int, barrier: Any,
                      results: Any) -> None:
    """Open the store in this process and try to decide every case (the race's other side)."""
    from finflow_core.errors import Conflict
    from finflow_core.lending.config import load_config
    from finflow_core.services.access import Principal
    from finflow_core.services.context import Context
    from finflow_core.services.workbench import Workbench
    from finflow_core.store import open_store

    actor = Principal(None, officer, frozenset({"officer"}))
    order = cases[:]
    random.Random(seed).shuffle(order)
    out: list[tuple[int, str, str, str]] = []
    try:
        with open_store(url) as store:
            review = Workbench(Context(load_config(), store), actor).review
            barrier.wait(60)
            for case in order:
                try:
                    d = review.decide(case, "approve" if seed % 2 else "decline", reason="race")
                    out.append((case, "won", d.decided_by, ""))
                except Conflict as exc:
                    out.append((case, "lost", str(exc.details.get("decided_by")), exc.message))
    except BaseException as exc:  # noqa: BLE001 - sent back to the test
        out.append((-1, "error", type(exc).__name__, str(exc)))
    results.put((officer, out))
