"""A lender's file as text, whatever its declared form (``dataset.encoding``,
``dataset.delimiter``): read as UTF-8, and what to say when it is not what the config says."""

from __future__ import annotations

import codecs
import difflib
import io
from collections.abc import Collection, Sequence
from typing import Any, BinaryIO

from finflow_core.lending.config import DELIMITERS

#: Bytes read at a time (the first look, the header, decoding).
BLOCK = 1 << 20


class AsUtf8(io.RawIOBase):
    """A file in another (ASCII-compatible) encoding, read as UTF-8 bytes; the first look has
    already checked that every byte decodes."""

    def __init__(self, raw: BinaryIO, encoding: str) -> None:
        self._raw, self._pending = raw, b""
        self._decoder = codecs.getincrementaldecoder(encoding)()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            block = self._raw.read(BLOCK)
            self._pending = self._decoder.decode(block, final=not block).encode("utf-8")
            if not block:
                break
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def decoded(head: bytes, encoding: str) -> str:
    """The first block as text, leniently (it may end inside a character)."""
    return head.decode("utf-8-sig" if encoding == "utf-8" else encoding, errors="ignore")


def encoding_name(encoding: str) -> str:
    return "UTF-8" if encoding == "utf-8" else encoding


def encoding_hint(encoding: str) -> str:
    if encoding == "utf-8":
        return ("Save it as 'CSV UTF-8' and upload it again (a file saved by Excel as 'CSV (Comma "
                "delimited)' on Windows is cp1252: an admin can declare dataset.encoding: cp1252).")
    return "Check dataset.encoding in the config, or save the file in that encoding."


def missing_hint(missing: Sequence[str], header: Sequence[str], delimiter: str,
                 taken: Collection[str] = ()) -> str:
    """What to say after "missing required column(s)": a header split by another delimiter,
    header names that differ from the config's only in case or spacing, or (a guess) that
    are spelt nearly the same and not used by the config (``taken``) already."""
    hint = ""
    seps = [sep for sep in DELIMITERS if sep != delimiter and sep in header[0]] if len(header) == 1 else []
    if seps:
        shown = {"\t": "a tab"}.get(seps[0], repr(seps[0]))
        save = "as comma-separated CSV" if delimiter == "," else f"separated by {delimiter!r}"
        hint = (f" The header looks separated by {shown}, not {delimiter!r}: declare it in the "
                f"config (dataset.delimiter: {seps[0]!r}) or save the file {save}.")
    near = near_names(missing, header)
    if near:
        shown = ", ".join(f"{have!r} for {want!r}" for want, have in near.items())
        hint += (f" The header has {shown}: names must match the config exactly (case, spaces "
                 "and underscores): rename the column in the file or in the config.")
    close = close_names([w for w in missing if w not in near], header, taken)
    if close:
        shown = ", ".join(f"{have!r} for {want!r}" for want, have in close.items())
        hint += (f" Did you mean {shown}? If so, rename the column in the file or in the "
                 "config.")
    return hint


def _key(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch not in " _-.")


def near_names(wanted: Sequence[str], header: Sequence[str]) -> dict[str, str]:
    """Header names that differ from a wanted one only in case, spaces, dashes or underscores."""
    found = {_key(h): h for h in header}
    return {w: found[_key(w)] for w in wanted if _key(w) in found and found[_key(w)] != w}


#: How alike two names must be (difflib's ratio of their letters) to be offered as a guess:
#: ``annual_inc`` for ``annual_income`` (0.86), not ``loan_term`` for ``loan_amount``.
CLOSE_NAME_RATIO = 0.8


def close_names(wanted: Sequence[str], header: Sequence[str],
                taken: Collection[str] = ()) -> dict[str, str]:
    """For each wanted name, the one header name spelt most like it, if any is close enough
    and not used by the config for another column already."""
    free = {_key(h): h for h in header if h not in taken}
    out: dict[str, str] = {}
    for w in wanted:
        guess = difflib.get_close_matches(_key(w), list(free), n=1, cutoff=CLOSE_NAME_RATIO)
        if guess:
            out[w] = free[guess[0]]
    return out
