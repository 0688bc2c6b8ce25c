"""The officer's decision form: what a reason or note may hold."""

from __future__ import annotations

import pytest

from finflow_core.services.review_records import InvalidDecision, check_form


@pytest.mark.parametrize(("reason", "note"), [
    ("R01\x1b[2J", ""),  # an escape sequence clears the terminal of whoever reads the export
    ("R01\x07", ""),
    ("R01 \u202eyrt", ""),  # shown reversed
    ("R01", "fine\x00"),
    ("R01", "ok\u2066x"),
])
def test_control_characters_in_a_reason_or_note_are_refused(reason: str, note: str) -> None:
    with pytest.raises(InvalidDecision, match="control character") as caught:
        check_form("decline", reason, note)
    assert caught.value.exit_code == 2


def test_a_note_may_span_lines_and_hold_tabs_and_any_script() -> None:
    outcome, reason, note = check_form("decline", "R01 دين مرتفع", "line one\n\tline two ✓")
    assert (outcome, reason, note) == ("decline", "R01 دين مرتفع", "line one\n\tline two ✓")
    with pytest.raises(InvalidDecision, match="control character"):
        check_form("decline", "R01\nR02", "")  # a reason is one line
