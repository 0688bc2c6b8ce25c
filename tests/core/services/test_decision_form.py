"""The officer's decision form: what a reason or note may hold."""

from __future__ import annotations

import re

import pytest

from finflow_core.errors import InvalidInput
from finflow_core.services.review_records import InvalidDecision, check_form
from finflow_core.services.text_input import typed_text


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


@pytest.mark.parametrize(("text", "lines", "kept"), [
    ("  wrong file  ", False, "wrong file"), ("two\nlines", True, "two\nlines"),
    ("tab\tin a note", True, "tab\tin a note"),
])
def test_typed_text_keeps_what_a_person_wrote(text: str, lines: bool, kept: str) -> None:
    assert typed_text(text, "reason", lines=lines) == kept


@pytest.mark.parametrize(("text", "lines", "says"), [
    ("", False, "needs a reason"), ("x" * 2001, False, "limited to 2,000 characters"),
    ("a\rb", True, "control character '\\r'"), ("one\ntwo", False, "control character '\\n'"),
    ("\u202eevil", True, "control character"), ("bell\x07", True, "control character"),
])
def test_typed_text_refuses_what_would_mislead_a_reader(text: str, lines: bool, says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)) as caught:
        typed_text(text, "reason", needed="voiding a batch needs a reason", lines=lines)
    assert caught.value.field == "reason"
