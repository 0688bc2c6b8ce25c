"""How a lender's CSV files are written: their encoding and delimiter (``dataset.encoding``,
``dataset.delimiter``). Everything FinFlow writes itself (a typed-in form, the data a
challenger is retrained on) is :data:`FINFLOW_CSV`: UTF-8 with commas."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from finflow_core.lending.config.fields import Problem

#: Delimiters a file may use: a comma, a semicolon (European exports), a tab, a pipe.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")


@dataclass(frozen=True)
class CsvForm:
    """A CSV file's encoding (an ASCII-compatible codec, by its canonical name) and delimiter."""

    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def shown(self) -> str:
        """How a person names it: ``cp1252, ';'-separated``."""
        name = "UTF-8" if self.encoding == "utf-8" else self.encoding
        sep = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[self.delimiter]
        return f"{name}, {sep}-separated"


FINFLOW_CSV = CsvForm()


def csv_encoding(name: str) -> str:
    """A codec CSV files can be read in: known to Python and ASCII-compatible (commas, quotes
    and line breaks are the bytes they are in ASCII), by its canonical name."""
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise Problem(f"unknown encoding {name!r}: use utf-8, or e.g. cp1252 (Excel's CSV on "
                      "Windows) or latin-1", ("encoding",)) from None
    if codec.name in ("utf-8", "utf-8-sig"):
        return "utf-8"  # a byte-order mark is dropped either way
    probe = 'id,"a b";\t|\r\n'
    try:
        compatible = probe.encode(codec.name) == probe.encode("ascii")
    except (UnicodeError, LookupError):
        compatible = False
    if not compatible:
        raise Problem(f"encoding {name!r} does not write commas and line breaks as ASCII does "
                      "(UTF-16/32): save the files as UTF-8", ("encoding",))
    return codec.name


def csv_delimiter(text: str) -> str:
    if text not in DELIMITERS:
        shown = ", ".join(repr(d) for d in DELIMITERS)
        raise Problem(f"delimiter must be one of {shown}, got {text!r}", ("delimiter",))
    return text
