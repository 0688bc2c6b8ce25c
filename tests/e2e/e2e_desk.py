"""Helpers of the review-desk browser tests: the queue grid and the keyboard."""

from __future__ import annotations

from typing import Any

from e2e_support import IDLE
from playwright.sync_api import Page

ROW_HEIGHT = 35  # st.dataframe's default row (and header) height, in CSS pixels


def quiet(page: Page, hold_ms: int = 400, timeout_s: float = 60) -> None:
    """Wait until the app has been idle for ``hold_ms``: a click that opens a case reruns
    twice (the selection, then the case), idle for a moment in between."""
    waited = 0.0
    while waited < timeout_s * 1000:
        page.wait_for_selector(IDLE, timeout=timeout_s * 1000)
        page.wait_for_timeout(hold_ms)
        waited += hold_ms
        if page.locator(IDLE).count():
            return
    raise AssertionError("the app never settled")


def row_point(page: Page, external_id: str) -> tuple[float, float]:
    """Where on screen the queue row of ``external_id`` is (the grid is drawn on a canvas;
    its accessible copy says which row holds the text)."""
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.locator("[role='gridcell']").first.wait_for(state="attached", timeout=30_000)
    cell = grid.locator("[role='gridcell']").filter(has_text=external_id).first
    row = int(cell.locator("xpath=..").get_attribute("aria-rowindex") or "0")
    box = grid.bounding_box()
    assert box is not None and row >= 2, (external_id, row)
    return box["x"] + 300, box["y"] + (row - 1) * ROW_HEIGHT + ROW_HEIGHT / 2


class QueueRow:
    """A clickable stand-in for a grid row (``click`` like a locator's)."""

    def __init__(self, page: Page, external_id: str) -> None:
        self.page, self.external_id = page, external_id

    def click(self, **_: Any) -> None:
        x, y = row_point(self.page, self.external_id)
        self.page.mouse.click(x, y)


def queue_row(page: Page, external_id: str) -> QueueRow:
    return QueueRow(page, external_id)


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two bounding boxes share any area."""
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
