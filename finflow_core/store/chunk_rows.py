"""A chunk's rows as the store writes them: column by column, sliced per transaction.

Everything here is CPU work without the store (so it can be done before a transaction
takes SQLite's write lock), and each builder gives exactly what the obvious, slower code
gives (tests compare them): cells as submitted as JSON objects, reasons as JSON lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from finflow_core.lending.intake.validation import ChunkResult

EMPTY_REASONS = "[]"


@dataclass
class ChunkRows:
    """A chunk's rows as stored, column by column (ids and seals are added per transaction):
    applications, scores, the automatic decisions (``auto`` marks their rows) and any
    experiment rows (table, columns)."""

    n: int
    applications: dict[str, Any]
    scores: dict[str, Any]
    auto: np.ndarray
    decisions: dict[str, Any]
    experiments: list[tuple[Any, dict[str, Any]]]

    def part(self, lo: int, hi: int) -> ChunkRows:
        """Rows ``lo`` to ``hi`` (one write transaction's share)."""
        if lo == 0 and hi == self.n:
            return self
        auto = self.auto[lo:hi]
        first, last = int(self.auto[:lo].sum()), int(self.auto[:hi].sum())
        return ChunkRows(hi - lo, _rows(self.applications, lo, hi), _rows(self.scores, lo, hi), auto,
                         _rows(self.decisions, first, last),
                         [(t, _rows(c, lo, hi)) for t, c in self.experiments])


@dataclass(frozen=True)
class PreparedChunk:
    """A chunk ready to store: its quarantined rows and its transactions' rows and seals."""

    chunk: ChunkResult
    parts: list[tuple[ChunkRows, Sealed | None]]


@dataclass(frozen=True)
class Sealed:
    """A transaction's application ids and the seals of its applications and scores, and of
    its experiment rows (in the order of :attr:`ChunkRows.experiments`)."""

    app_ids: np.ndarray
    applications: list[str]
    scores: list[str]
    experiments: tuple[list[str], ...] = ()


def clipped(texts: list[str], limit: int) -> list[str]:
    """``texts`` cut to ``limit`` characters (the column's width); nearly always none is longer."""
    if not texts or max(map(len, texts)) <= limit:
        return texts
    return [t[:limit] for t in texts]


def mapped(keys: np.ndarray, mapping: dict[Any, Any]) -> np.ndarray:
    """``mapping[k]`` for each of ``keys`` (a handful of distinct ones), a key at a time."""
    out = np.empty(len(keys), dtype=object)
    for key, value in mapping.items():
        out[keys == key] = value
    missing = [k for k in set(keys.tolist()) if k not in mapping]
    if missing:
        raise KeyError(missing[0])
    return out


def _rows(columns: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """Rows ``lo`` to ``hi`` of columns given as arrays or lists (a scalar stands for all)."""
    return {k: v[lo:hi] if isinstance(v, list | np.ndarray) else v for k, v in columns.items()}


def records_json(frame: pd.DataFrame) -> list[str]:
    """Each row as a JSON object (the cells as submitted), exactly as ``to_json(orient=
    "records", lines=True)`` writes them, at about half the cost: one array is encoded and
    cut where ``},{"`` joins two records. A cell can hold that text too (``"},{"`` ends
    with its closing quote), which only ever adds cuts: when there are more pieces than
    rows, the frame is encoded line by line instead."""
    if len(frame) == 0:
        return []
    text = frame.to_json(orient="records", force_ascii=False)
    parts = text[3:-2].split('},{"') if len(frame.columns) else []
    if len(parts) != len(frame):
        return frame.to_json(orient="records", lines=True, force_ascii=False).splitlines()
    return ['{"' + part + "}" for part in parts]


_REASONS_ENCODER = json.JSONEncoder(default=lambda o: json_default(o))


def reasons_json(reasons: list[list[dict[str, Any]]], encoded: list[Any] | None = None) -> list[str]:
    """Each row's reasons as JSON text (most rows, approvals, have none).

    ``encoded``: the same text made while scoring (a scored frame's ``reasons_json``), used
    where a row has it, so 40k explained rows per 100k are not encoded a second time.
    """
    encode = _REASONS_ENCODER.encode
    if encoded is None:
        return [encode(r) if r else EMPTY_REASONS for r in reasons]
    return [e if isinstance(e, str) else encode(r) if r else EMPTY_REASONS
            for r, e in zip(reasons, encoded, strict=True)]


def json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, float) and not np.isfinite(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
