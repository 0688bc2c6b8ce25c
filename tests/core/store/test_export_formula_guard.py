"""The spreadsheet formula guard of every CSV export, case by case: a text cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (after any spaces or control
characters) gets a leading ``'``, in the
Arrow writer (``csv_text``) and in the pandas one alike, and in the header.

The byte-for-byte comparison of the two writers (``test_store_exports``) cannot catch a
character dropped from the guard (both read ``FORMULA_PREFIXES``): this file says what the
output must be.
"""

from __future__ import annotations

import pandas as pd
import pytest

from finflow_core.lending.spreadsheet import FORMULA_PREFIXES, spreadsheet_safe
from finflow_core.store import csv_text, exports

RISKY = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-1+1", "@SUM(A1:A9)", "\t=1+1", "\r=1+1"]
#: A formula character later in the text: the guard leaves these as written.
SAFE = ["a=1", "1+1", "x-1", "me@example.com", "'=quoted already", ""]
#: Leading whitespace or a control character before a formula character: some
#: spreadsheet imports strip it (trim-spaces options) and then run the rest.
PADDED = [" =1+1", "  +1+1", "\n=1+1", "\x0b=1+1", "\x00@SUM(A1)", "\u00a0=1+1", "\u3000=1+1"]


def cells(frame: pd.DataFrame) -> list[str]:
    """The exported cells of the frame's first column, as written (quotes undone)."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(exports.csv_bytes(frame).decode("utf-8"), newline="")))
    return [r[0] for r in rows[1:]]


def frame(values: list[str], dtype: str) -> pd.DataFrame:
    return pd.DataFrame({"cell": pd.Series(values, dtype=dtype), "n": range(len(values))})


def test_the_guard_names_each_formula_character() -> None:
    assert set(FORMULA_PREFIXES) == {"=", "+", "-", "@", "\t", "\r"}


@pytest.mark.parametrize("value", RISKY)
def test_spreadsheet_safe_defuses_a_formula(value: str) -> None:
    assert spreadsheet_safe(value) == "'" + value


@pytest.mark.parametrize("value", SAFE)
def test_spreadsheet_safe_leaves_text(value: str) -> None:
    assert spreadsheet_safe(value) == value


@pytest.mark.parametrize("dtype", ["str", "object"])
def test_every_export_writer_defuses_formulas(dtype: str) -> None:
    df = frame(RISKY + SAFE, dtype)
    assert csv_text.csv_rows(df) is not None  # the Arrow writer
    assert cells(df) == ["'" + v for v in RISKY] + SAFE
    mixed = df.assign(other=pd.Series([1, "x"] * (len(df) // 2), dtype=object))
    assert csv_text.csv_rows(mixed) is None  # the pandas writer
    assert cells(mixed) == ["'" + v for v in RISKY] + SAFE


def test_a_header_that_is_a_formula_is_defused() -> None:
    df = pd.DataFrame({"=cmd": ["a"], "ok": ["b"]})
    assert exports.csv_bytes(df).splitlines()[0] == b"'=cmd,ok"


@pytest.mark.parametrize("dtype", ["str", "object"])
@pytest.mark.parametrize("value", PADDED)
def test_a_formula_after_leading_whitespace_is_defused(value: str, dtype: str) -> None:
    assert spreadsheet_safe(value) == "'" + value
    assert cells(frame([value, "x", " plain", "\u00a0text"], dtype)) == ["'" + value, "x", " plain", "\u00a0text"]
    mixed = frame([value, "x"], dtype).assign(other=pd.Series([1, "x"], dtype=object))
    assert csv_text.csv_rows(mixed) is None and cells(mixed)[0] == "'" + value  # the pandas writer
