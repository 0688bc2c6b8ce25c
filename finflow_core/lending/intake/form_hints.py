"""What to declare when a number cell is written in a form the column does not declare.

A real file writes ``83.70%``, ``36 months``, ``$1,250`` or ``Fully Paid`` where the config
expects a plain number. The quality gate never guesses (the row is quarantined); this says
which key of the column (docs/REAL_DATA.md) reads that form, so a lender fixes the config
once instead of editing the file.
"""

from __future__ import annotations

import re

from finflow_core.lending.config import ColumnSpec

_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)"
_PERCENT = re.compile(rf"^\s*{_NUMBER}\s*%\s*$")
_GROUPED = re.compile(r"^\s*[+-]?\d{1,3}([,' \u00a0\u202f_])\d{3}(\1\d{3})*(\.\d+)?\s*$")
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+\s*$")
_EUROPEAN = re.compile(r"^\s*[+-]?\d{1,3}(\.\d{3})+(,\d+)?\s*$")
_AROUND = re.compile(r"^\s*(?P<before>[^\d+\-.,\s]*)\s*[+-]?[\d.,]+\s*(?P<after>[^\d\s][^\d]*)?$")
_WORDS = re.compile(r"^[^\d]*[A-Za-z][^\d]*$")
#: Texts exports write for "no value" (pandas' nan, R's NA, Excel's #N/A, SQL's NULL...).
NO_VALUE_TEXTS = frozenset({"nan", "na", "n/a", "#n/a", "null", "none", "?", "-", "--", "."})


def form_hint(spec: ColumnSpec, value: object) -> str:
    """One sentence naming the key that reads ``value`` as a number, or "" (no clear form)."""
    cell = str(value).strip() if value is not None else ""
    if not cell:
        return ""
    if cell.lower() in NO_VALUE_TEXTS and cell not in spec.missing_values:
        also = "" if spec.nullable else " and nullable: true"
        return (f"a text that usually means no value: if it does, declare missing_values: "
                f"[{cell!r}]{also} for this column")
    if _PERCENT.match(cell) and not spec.percent:
        return "written as a percentage: declare percent: true for this column (12.5% reads as 0.125)"
    if _EUROPEAN.match(cell) and spec.decimal != ",":
        return 'written as 1.250,50: declare thousands: "." and decimal: "," for this column'
    grouped = _GROUPED.match(cell)
    if grouped and spec.thousands is None:
        return f"written with digit groups: declare thousands: {grouped.group(1)!r} for this column"
    if _DECIMAL_COMMA.match(cell) and spec.decimal != ",":
        return 'written with a decimal comma: declare decimal: "," for this column'
    if spec.role == "target" and _WORDS.match(cell) and not spec.codes:
        return (f"an outcome written as text: declare codes for this column giving each text "
                f"1 (defaulted) or 0 (repaid), e.g. codes: {{{cell!r}: 0 or 1, ...}}")
    around = _AROUND.match(cell)
    if around and not spec.strip:
        extra = [t for t in (around.group("before"), (around.group("after") or "").strip()) if t]
        if extra:
            listed = ", ".join(repr(t) for t in extra)
            inner = form_hint(spec, cell.replace(extra[0], "", 1).replace(extra[-1], "", 1))
            also = f"; it is also {inner}" if inner else " for this column"
            return f"written with {listed} around the number: declare strip: [{listed}]{also}"
    return ""
