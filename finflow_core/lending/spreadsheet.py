"""Text a spreadsheet would run as a formula, and how exports defuse it.

Uploaded cells are attacker-controlled: a cell starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return can run as a formula when an export is opened in a spreadsheet,
and so can one where spaces or control characters come first (`` =1+1``, ``\n=1+1``): an
import that trims them runs the rest. The quality gate quarantines such cells; every export
prefixes a ``'`` so they show as text.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: What may stand before a formula character and be trimmed away by an import: ASCII
#: spaces and control characters, Latin-1's controls and no-break space, and Unicode's
#: spaces, zero-width and direction marks, separators and the byte-order mark.
LEADING = ("\\x00-\\x20\\x7f-\\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064"
           "\u3000\ufeff")
#: A cell a spreadsheet could run: one pattern for Python's ``re`` and Arrow's RE2 alike.
FORMULA_PATTERN = "^(?:[\\t\\r]|[" + LEADING + "]*[=+@-])"
_FORMULA = re.compile(FORMULA_PATTERN)


def is_formula(text: str) -> bool:
    """True for text a spreadsheet would run as a formula (see the module doc)."""
    return _FORMULA.match(text) is not None


def spreadsheet_safe(value: Any) -> Any:
    """The value, with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value
