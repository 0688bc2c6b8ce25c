"""Quarantined rows as the store keeps them: nothing is lost, every failed check is named."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection

from finflow_core.lending.intake.validation import ChunkResult
from finflow_core.store.chunk_rows import records_json
from finflow_core.store.lending_tables import quarantine_issues, quarantine_rows


def write_quarantine(conn: Connection, batch_id: str, chunk: ChunkResult, id_col: str) -> None:
    """A chunk's quarantined rows (cells as written, reasons) and their issues, one row per
    failed check (row, column, rule, value, message), in the caller's transaction."""
    q = chunk.quarantined
    if q.empty:
        return
    cells = q.drop(columns=["row_number", "line", "reasons"])
    data = records_json(cells)
    conn.execute(quarantine_rows.insert(), [
        {
            "batch_id": batch_id, "row_number": int(rn), "line": int(ln),
            "external_id": None if ext is None or pd.isna(ext) else str(ext)[:255],
            "reasons": str(rs), "data": d,
        }
        for rn, ln, rs, ext, d in zip(
            q["row_number"], q["line"], q["reasons"],
            q[id_col] if id_col in q else [None] * len(q), data, strict=True,
        )
    ])
    issues = chunk.issues
    if issues.empty:
        return
    conn.execute(quarantine_issues.insert(), [
        {
            "batch_id": batch_id, "row_number": int(r.row_number),
            "column_name": str(r.column), "rule": str(r.rule),
            "value": None if r.value is None else str(r.value), "message": str(r.message),
        }
        for r in issues.itertuples(index=False)
    ])
