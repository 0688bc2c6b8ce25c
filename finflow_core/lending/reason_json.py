"""Reason codes as JSON text, built from pieces encoded once (a batch repeats its values).

Every function gives exactly what ``json`` and the scalar formatting rules give for the same
values (tests compare them); they exist because a weekly run words and encodes hundreds of
thousands of reasons.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while some 150k dicts and 40k lists are built for a
    100k-row batch: none of them can be part of a cycle, yet their allocation alone sets off
    collections that walk the whole heap, a third of the time it took (measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def rounded_half_up(x: np.ndarray, decimals: int, below: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Numbers rounded half away from zero at ``decimals`` places, as the formatting rules
    round them (on the number as written, ``repr``), in units of ``10**-decimals``; and
    where that is certain.

    ``|x| * 10**decimals`` in binary lies within about 2e-16 of its size from the number
    as written times ``10**decimals``, so wherever its fraction is not within 1e-12 of a
    half both round alike. The rest (within a whisker of a half, a decimal tie such as
    0.125, huge, non-finite, or not below ``below``) is left to the exact formatter.
    """
    a = np.abs(x)
    with np.errstate(invalid="ignore", over="ignore"):
        y = a * 10.0**decimals
        whole = np.floor(y)
        frac = y - whole
        sure = (np.isfinite(y) & (y < 2.0**50) & (a < below)
                & (np.abs(frac - 0.5) > 1e-12 * np.maximum(y, 1.0)))
    units = np.where(sure, whole + (frac > 0.5), 0.0).astype(np.int64)
    return np.where(x < 0, -units, units), sure


def json_floats(x: np.ndarray) -> list[str]:
    """Floats as ``json`` writes them: ``float.__repr__``, and NaN, Infinity, -Infinity."""
    out = list(map(float.__repr__, x.tolist()))
    for k in np.flatnonzero(~np.isfinite(x)).tolist():
        out[k] = "NaN" if math.isnan(x[k]) else "Infinity" if x[k] > 0 else "-Infinity"
    return out


def json_numbers(x: np.ndarray) -> np.ndarray:
    """:func:`json_floats` once per distinct value (a batch repeats its values), each
    followed by what comes between a reason's value and its contribution."""
    distinct, inverse = np.unique(x, return_inverse=True)  # NaNs are one value
    out = objects([f"{v}{CONTRIBUTION}" for v in json_floats(distinct)])[inverse]
    zero = x == 0  # unique takes -0.0 and 0.0 for one value
    out[zero & np.signbit(x)] = f"-0.0{CONTRIBUTION}"
    out[zero & ~np.signbit(x)] = f"0.0{CONTRIBUTION}"
    return out


def objects(items: list[Any]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


#: Between a reason's value and its contribution, as ``json.JSONEncoder`` writes a dict.
CONTRIBUTION = ', "contribution": '


def joined_rows(rows: np.ndarray, counts: np.ndarray, heads: np.ndarray, shown: np.ndarray,
            tails: list[str], unplain: set[int]) -> list[str | None]:
    """Each row's reasons as JSON text from pieces encoded already (the rows in ``unplain``:
    None): one join over all of them and one split at the row ends, which JSON text never
    holds raw (a newline in a string is written ``\\n``)."""
    m = len(rows)
    if not m:
        return ["[]"] * len(counts)
    seps = ["}, "] * m  # between two reasons of a row; a new row closes the one before
    for k in (np.flatnonzero(np.diff(rows)) + 1).tolist():
        seps[k] = "}]\n["
    seps[0] = "["
    tokens: list[Any] = [None] * (4 * m)
    tokens[0::4] = seps
    tokens[1::4] = heads.tolist()
    tokens[2::4] = shown.tolist()  # the value and ', "contribution": '
    tokens[3::4] = tails
    texts: list[str | None] = ("".join(tokens) + "}]").split("\n")
    if len(texts) == len(counts):  # every row has a reason (nearly always so)
        out = texts
    else:
        rest = iter(texts)
        out = [next(rest) if c else "[]" for c in counts.tolist()]
    for i in unplain:
        out[i] = None
    return out


def json_value(value: Any) -> str | None:
    """A code as ``json`` writes it; None for a type it has no plain form for."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return json.dumps(value)
    if kind is float:
        return json_floats(np.array([value]))[0]
    if kind is bool or kind is int:
        return json.dumps(value)
    return None
