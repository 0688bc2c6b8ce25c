"""What a person types (a reason, a note): checked the same way by every service.

A reason is read later in letters, exports, terminals and the audit trail, so it must say
what it seems to say: no control characters (escape sequences, bell, NUL) and no bidi
overrides, which can hide or reorder text. A note may keep its line breaks and tabs.
"""

from __future__ import annotations

import unicodedata

from finflow_core.errors import InvalidInput
from finflow_core.formatting import BIDI_CONTROLS

#: Characters a reason or note may hold at most, unless a service says otherwise.
TEXT_LIMIT = 2000


def control_character(text: str, allowed: str = "") -> str | None:
    """The first control or direction-override character of ``text`` not in ``allowed``."""
    for ch in text:
        if ch not in allowed and (unicodedata.category(ch) == "Cc" or ch in BIDI_CONTROLS):
            return ch
    return None


def typed_text(text: str | None, field: str, *, needed: str | None = None, limit: int = TEXT_LIMIT,
               lines: bool = False, error: type[InvalidInput] = InvalidInput) -> str:
    """``text`` without surrounding spaces, or ``error`` naming ``field``: empty when
    ``needed`` (its message says why it is needed), longer than ``limit``, or holding a
    control character (``lines``: line breaks and tabs are allowed)."""
    said = (text or "").strip()
    if needed is not None and not said:
        raise error(needed, field=field)
    if len(said) > limit:
        raise error(f"the {field.replace('_', ' ')} is limited to {limit:,} characters", field=field)
    hidden = control_character(said, allowed="\n\t" if lines else "")
    if hidden is not None:
        raise error(f"the {field.replace('_', ' ')} holds the control character {hidden!r}: it is "
                    "read in letters, exports and terminals, where it would hide or rewrite text; "
                    "type it again without it", field=field)
    return said
