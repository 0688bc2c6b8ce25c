"""Text a spreadsheet would run as a formula, and how exports defuse it.

Uploaded cells are attacker-controlled: a cell starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return can run as a formula when an export is opened in a spreadsheet.
The quality gate quarantines such cells; every export prefixes a ``'`` so they show as text.
"""

from __future__ import annotations

from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """The value, with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
