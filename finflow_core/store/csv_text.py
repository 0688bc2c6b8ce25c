"""CSV rows exactly as ``safe_frame(df).to_csv(index=False, lineterminator="\\r\\n")`` writes
them, made with Arrow a column at a time.

pandas hands every cell to ``csv.writer`` (one Python call per cell) and formats floats with
numpy's Dragon4: most of a million-row export. Here each column becomes one Arrow string
array (the spreadsheet guard, the quoting, the number text), and the rows are joined in C.
The rules copied are few and are tested against pandas: a text cell gets a ``'`` if it starts
with a formula character (after any spaces or control characters), then quotes (inner ``"`` doubled) if it holds ``,`` ``"`` CR or LF
(``csv.QUOTE_MINIMAL``); a missing cell is empty; an integer is its digits; a float is numpy's
``str`` of it. A column of any other kind (objects that are not all text, booleans,
extension types) makes :func:`csv_rows` decline, and the caller writes with pandas.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finflow_core.lending.spreadsheet import FORMULA_PATTERN, FORMULA_PREFIXES

_NEEDS_QUOTES = '[,"\r\n]'  # the delimiter, the quote character, the line terminator's
_SPECIAL = tuple(c.encode() for c in ',"\r\n')
#: The guard's characters are single ASCII bytes: a cell's first byte tells (UTF-8 never
#: starts a longer character with an ASCII byte).
_ONE_BYTE_PREFIXES = all(len(p) == 1 and ord(p) < 128 for p in FORMULA_PREFIXES)
_FORMULA_BYTE = np.zeros(256, dtype=bool)
_FORMULA_BYTE[[ord(p) for p in FORMULA_PREFIXES if _ONE_BYTE_PREFIXES]] = True
#: First bytes of a cell that may start with spaces or control characters before a formula
#: character (ASCII ones, and the lead byte of any longer UTF-8 character): checked in full.
_MAYBE_BYTE = np.zeros(256, dtype=bool)
_MAYBE_BYTE[[*range(0x21), 0x7F, *range(0x80, 0x100)]] = True
_MAYBE_BYTE &= ~_FORMULA_BYTE
#: Floats with at most this many decimals are written without numpy (see _float_text).
_DECIMALS = 6
_SCALE = 10.0 ** _DECIMALS
#: Below this, a float's spacing is under a quarter of 10**-_DECIMALS: no shorter decimal than
#: the scaled integer's can round-trip, so Python's (and numpy's) shortest repr is that one.
_FAST_LIMIT = 2.0 ** 30


def _lit(text: str) -> pa.Scalar:
    """A constant for the large_string kernels (cells are large_string: no 2 GiB limit)."""
    return pa.scalar(text, type=pa.large_string())


_NONE, _APOSTROPHE, _QUOTE, _COMMA, _CRLF = (_lit(t) for t in ("", "'", '"', ",", "\r\n"))


def csv_rows(df: pd.DataFrame) -> pa.Buffer | None:
    """The frame's rows (no header) as UTF-8 CSV, or None if it has a column this does not
    render exactly as pandas would (or fewer than two: a lone empty cell is written ``""``)."""
    if len(df) == 0 or df.shape[1] < 2 or isinstance(df.columns, pd.MultiIndex):
        return None
    columns = []
    for i in range(df.shape[1]):
        text = _column_text(df.iloc[:, i])
        if text is None:
            return None
        columns.append(text)
    columns[-1] = pc.binary_join_element_wise(columns[-1], _CRLF, _NONE)
    lines = pc.binary_join_element_wise(*columns, _COMMA)
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64 if pa.types.is_large_string(lines.type)
                            else np.int32)[lines.offset:lines.offset + len(lines) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    return lines.buffers()[2].slice(start, end - start)


def _column_text(col: pd.Series) -> pa.Array | None:
    """One column's cells as CSV fields (never null), or None if not rendered here."""
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        return pc.cast(pa.array(col.to_numpy()), pa.large_string())
    if isinstance(dtype, np.dtype) and dtype == np.float64:
        return _float_text(col.to_numpy()).cast(pa.large_string())
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        text = pa.array(col.array)  # the column's own Arrow data
    elif (isinstance(dtype, pd.StringDtype)
          or (dtype == np.dtype(object) and pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty"))):
        text = pa.array(col.to_numpy(dtype=object, na_value=None), type=pa.large_string())
    else:
        return None  # objects not all text, booleans, ...: left to safe_frame and csv.writer
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return _field_text(text.cast(pa.large_string()))


def _field_text(text: pa.LargeStringArray) -> pa.Array:
    """The spreadsheet guard (:func:`~finflow_core.lending.spreadsheet.spreadsheet_safe`),
    then csv.QUOTE_MINIMAL; a missing cell is empty. Both tests look at the raw bytes first
    (a cell's first byte; is any special byte there at all), so most columns cost a scan."""
    text = pc.fill_null(text, _NONE)
    risky = _risky(text)
    if risky is not None:
        text = pc.if_else(risky, pc.binary_join_element_wise(_APOSTROPHE, text, _NONE), text)
    quote = _needing_quotes(text)
    if quote.size:
        cells = pc.replace_substring(text.take(quote), '"', '""')
        quoted = pc.binary_join_element_wise(_QUOTE, cells, _QUOTE, _NONE)
        index = np.arange(len(text))
        index[quote] = len(text) + np.arange(len(quote))
        text = pa.concat_arrays([text, quoted]).take(index)
    return text


def _needing_quotes(text: pa.LargeStringArray) -> np.ndarray:
    """The cells holding a delimiter, quote or line break, in order: found with bytes.find
    (memchr) over the column's bytes, as such cells are usually few (a regex per cell is
    slower then; it is used when they are many)."""
    data = _data(text).tobytes()
    if sum(data.count(ch) for ch in _SPECIAL) > max(1024, len(text) // 16):
        found = pc.match_substring_regex(text, _NEEDS_QUOTES)
        return np.flatnonzero(found.to_numpy(zero_copy_only=False))
    at: list[int] = []
    for ch in _SPECIAL:
        i = data.find(ch)
        while i >= 0:
            at.append(i)
            i = data.find(ch, i + 1)
    if not at:
        return np.zeros(0, dtype=np.int64)
    offsets = _offsets(text)
    return np.unique(np.searchsorted(offsets - offsets[0], np.asarray(at), side="right") - 1)


def _risky(text: pa.LargeStringArray) -> pa.Array | np.ndarray | None:
    """Which cells a spreadsheet would run as a formula, or None if none would."""
    if not _ONE_BYTE_PREFIXES:
        risky = pc.match_substring_regex(text, FORMULA_PATTERN)
        return risky if pc.any(risky).as_py() else None
    offsets = _offsets(text)
    starts = offsets[:-1]
    filled = np.flatnonzero(offsets[1:] > starts)
    first = _data(text)[starts[filled] - offsets[0]]
    found = np.zeros(len(text), dtype=bool)
    found[filled] = _FORMULA_BYTE[first]
    maybe = filled[_MAYBE_BYTE[first]]  # a space, control or non-ASCII character first
    if maybe.size:
        found[maybe] = pc.match_substring_regex(text.take(pa.array(maybe)), FORMULA_PATTERN).to_numpy(
            zero_copy_only=False)
    return found if found.any() else None


def _offsets(text: pa.LargeStringArray) -> np.ndarray:
    return np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]


def _data(text: pa.LargeStringArray) -> np.ndarray:
    """The cells' bytes, end to end (from the first cell's start)."""
    offsets, buffer = _offsets(text), text.buffers()[2]
    if buffer is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(buffer, dtype=np.uint8)[int(offsets[0]):int(offsets[-1])]


@functools.cache
def _fractions() -> pa.StringArray:
    """The text after the point of every ``k / 10**6``: "0", "000001", ..., "999999" with the
    trailing zeros dropped (a million short strings, 14 MB, made once in 0.1 s)."""
    padded = pc.cast(pa.array(np.arange(10**_DECIMALS) + 10**_DECIMALS), pa.string())
    stripped = pc.utf8_rtrim(pc.utf8_slice_codeunits(padded, 1), characters="0")
    return pc.if_else(pc.equal(stripped, ""), "0", stripped)


def _float_text(values: np.ndarray) -> pa.Array:
    """numpy's ``str`` of each float (what pandas writes; NaN empty), without numpy's Dragon4
    for the usual ones.

    A float ``x`` that is the nearest double to ``D = n / 10**6`` (n an integer) and small
    enough that its spacing is under a quarter of 10**-6 has ``D`` (trailing zeros dropped)
    as its shortest round-trip decimal, so as its repr, positional from 1e-4 up; every other
    float (and -0.0 is kept) is formatted by numpy itself.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        units = np.rint(values * _SCALE)
        fast = ((units / _SCALE == values) & (np.abs(values) < _FAST_LIMIT)
                & ((np.abs(values) >= 1e-4) | (values == 0)))
    missing = np.isnan(values)
    slow = ~fast & ~missing
    n = np.abs(units[fast]).astype(np.int64)
    whole = pc.cast(pa.array(n // 10**_DECIMALS), pa.string())
    texts = pc.binary_join_element_wise(whole, _fractions().take(n % 10**_DECIMALS), ".")
    negative = np.signbit(values[fast])
    if negative.any():
        texts = pc.if_else(negative, pc.binary_join_element_wise("-", texts, ""), texts)
    if fast.all():
        return texts
    others = pa.array(values[slow].astype(str), type=pa.string())
    pool = pa.concat_arrays([texts, others, pa.array([""], type=pa.string())])
    index = np.full(len(values), len(pool) - 1, dtype=np.int64)  # "" (NaN) unless set
    index[fast] = np.arange(len(texts))
    index[slow] = len(texts) + np.arange(len(others))
    return pool.take(index)
