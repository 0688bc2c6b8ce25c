"""Files made from the store: spreadsheet-safe CSV and a batch's report folder."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from finflow_core.lending.spreadsheet import FORMULA_PREFIXES, spreadsheet_safe
from finflow_core.pipeline.run import BatchSummary
from finflow_core.store import Store
from finflow_core.store.batch_queries import (
    decisions_frame,
    issues_frame,
    iter_decision_frames,
    quarantine_frame,
)
from finflow_core.store.batch_writer import json_default

REPORT_FILES = {"decisions": "decisions.csv", "quarantine": "quarantine.csv",
                "issues": "quarantine_issues.csv", "summary": "summary.json"}


def export_batch(store: Store, summary: BatchSummary, out_dir: Path, reason_codes: int) -> dict[str, Path]:
    """Write decisions.csv, quarantine.csv, quarantine_issues.csv and summary.json from the store."""
    batch_id = summary.batch_id
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in REPORT_FILES.items()}
    frames = iter_decision_frames(store, batch_id, reason_codes)
    first = next(frames, None)
    if first is None:  # no valid application: the header alone
        write_csv(decisions_frame(store, batch_id, reason_codes), paths["decisions"])
    else:
        write_csv(itertools.chain([first], frames), paths["decisions"])
    write_csv(quarantine_frame(store, batch_id), paths["quarantine"])
    write_csv(issues_frame(store, batch_id), paths["issues"])
    d = summary.to_dict()
    d.pop("already_stored", None)
    d.pop("timings", None)
    paths["summary"].write_text(json.dumps(d, indent=2, default=json_default))
    return paths


def write_csv(frames: pd.DataFrame | Iterable[pd.DataFrame], path: Path) -> None:
    """CSV that is safe to open in a spreadsheet (see :func:`safe_frame`), chunk by chunk."""
    chunks = [frames] if isinstance(frames, pd.DataFrame) else frames
    with open(path, "w", newline="", encoding="utf-8") as fh:
        first = True
        for df in chunks:
            safe_frame(df).to_csv(fh, index=False, header=first, lineterminator="\r\n")
            first = False


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The same safe CSV, in memory (for downloads)."""
    return safe_frame(df).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Text that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a '."""
    out = df.copy()
    out.columns = [spreadsheet_safe(str(c)) for c in df.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if col.dtype == object or isinstance(col.dtype, pd.StringDtype):
            text = col.astype("str")  # Arrow strings: one vectorised test over the column
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
            if risky.any():
                out.isetitem(i, col.astype(object).where(~risky, "'" + text))
    return out
