"""Files made from the store: spreadsheet-safe CSV and a batch's report folder.

Reports are written to temporary names in the target folder and renamed into place, with
``summary.json`` last (it marks a complete set): a run killed while exporting never leaves
a half-written ``decisions.csv`` beside last week's ``summary.json``. Problems with the
folder (an existing file of that name, not writable) are found before anything is stored.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from finflow_core.errors import InvalidInput
from finflow_core.lending.spreadsheet import FORMULA_PATTERN, spreadsheet_safe
from finflow_core.pipeline.run import BatchSummary
from finflow_core.store import Store
from finflow_core.store.batch_queries import (
    decisions_frame,
    issues_frame,
    iter_decision_frames,
    quarantine_frame,
    stored_summary,
)
from finflow_core.store.chunk_rows import json_default
from finflow_core.store.csv_text import csv_rows
from finflow_core.store.faults import StoreNotWritable

REPORT_FILES = {"decisions": "decisions.csv", "quarantine": "quarantine.csv",
                "issues": "quarantine_issues.csv", "mappings": "value_mappings.csv",
                "summary": "summary.json"}
MAPPING_COLUMNS = ["column", "value", "mapped_to", "count"]
#: Summary keys that describe a run or an upload, not the batch's content (left out of
#: summary.json, so the same file gives the same reports; `batches list` has who and when).
RUN_ONLY = ("already_stored", "timings", "uploaded_at", "uploaded_by")


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that cannot take the reports, before any work is done."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(f"--out {out_dir} is an existing file, not a folder: name a folder "
                           "(it is created if missing)", field="out")
    existing = out_dir
    while not existing.exists():
        if existing.is_symlink():  # dangling: mkdir would fail only after the batch is stored
            raise InvalidInput(f"--out {out_dir}: {existing} is a symbolic link to "
                               f"{os.readlink(existing)}, which does not exist: create its target "
                               "or choose another folder", field="out")
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(f"--out {out_dir}: {existing} is a file, not a folder", field="out")
    for name in REPORT_FILES.values():
        if (out_dir / name).is_dir():
            raise InvalidInput(f"--out {out_dir} holds a folder named {name}: remove it or choose "
                               "another folder", field="out")
    try:
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".finflow-probe-")  # noqa: SIM115
    except OSError as exc:
        raise StoreNotWritable(f"--out {out_dir} is not writable ({exc.strerror}): choose a folder "
                               "this user can write", path=str(out_dir)) from None
    probe.close()


def export_batch(store: Store, summary: BatchSummary, out_dir: Path, reason_codes: int) -> dict[str, Path]:
    """Write decisions.csv, quarantine.csv, quarantine_issues.csv, value_mappings.csv and
    summary.json from the store (each to a temporary name, then renamed; summary.json last)."""
    check_out_dir(out_dir)
    batch_id = summary.batch_id
    summary = stored_summary(store, batch_id) or summary  # as stored: who, when, with what
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / v for k, v in REPORT_FILES.items()}
    with _staged(paths) as staged:
        frames = iter_decision_frames(store, batch_id, reason_codes)
        first = next(frames, None)
        if first is None:  # no valid application: the header alone
            write_csv(decisions_frame(store, batch_id, reason_codes), staged["decisions"])
        else:
            write_csv(itertools.chain([first], frames), staged["decisions"])
        write_csv(quarantine_frame(store, batch_id), staged["quarantine"])
        write_csv(issues_frame(store, batch_id), staged["issues"])
        write_csv(pd.DataFrame(summary.value_mappings, columns=MAPPING_COLUMNS), staged["mappings"])
        d = {k: v for k, v in summary.to_dict().items() if k not in RUN_ONLY}
        staged["summary"].write_text(json.dumps(d, indent=2, default=json_default), encoding="utf-8")
    return paths


@contextlib.contextmanager
def _staged(paths: dict[str, Path]) -> Iterator[dict[str, Path]]:
    """Temporary files beside ``paths``, renamed into place when the block succeeds."""
    staged = {k: p.with_name(f".{p.name}.{os.getpid()}.tmp") for k, p in paths.items()}
    try:
        yield staged
        paths["summary"].unlink(missing_ok=True)  # no old summary beside new files, ever
        for key in [k for k in paths if k != "summary"] + ["summary"]:
            os.replace(staged[key], paths[key])
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def write_csv(frames: pd.DataFrame | Iterable[pd.DataFrame], path: Path) -> None:
    """CSV that is safe to open in a spreadsheet (see :func:`safe_frame`), chunk by chunk."""
    chunks = [frames] if isinstance(frames, pd.DataFrame) else frames
    with open(path, "wb") as fh:
        first = True
        for df in chunks:
            _write_chunk(fh, df, header=first)
            first = False


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The same safe CSV, in memory (for downloads)."""
    out = io.BytesIO()
    _write_chunk(out, df, header=True)
    return out.getvalue()


def _write_chunk(fh: BinaryIO, df: pd.DataFrame, *, header: bool) -> None:
    """``safe_frame(df).to_csv(...)`` in UTF-8: the rows by :func:`csv_rows` when it can
    render every column (the same bytes, several times faster), else by pandas."""
    rows = csv_rows(df)
    if rows is None:
        fh.write(safe_frame(df).to_csv(index=False, header=header, lineterminator="\r\n")
                 .encode("utf-8"))
        return
    if header:
        fh.write(safe_frame(df.iloc[:0]).to_csv(index=False, lineterminator="\r\n").encode("utf-8"))
    fh.write(rows)


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Text that a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a '."""
    out = df.copy()
    out.columns = [spreadsheet_safe(str(c)) for c in df.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if col.dtype == object or isinstance(col.dtype, pd.StringDtype):
            text = col.astype("str")  # Arrow strings: one vectorised test over the column
            risky = text.str.match(FORMULA_PATTERN).fillna(False).to_numpy(dtype=bool)
            if risky.any():
                out.isetitem(i, col.astype(object).where(~risky, "'" + text))
    return out
