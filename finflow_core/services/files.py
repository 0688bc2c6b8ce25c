"""What a front end needs of the store's files and faults, without reaching into the store:
checking an output folder before any work, writing a report file safely, and the words for an
operating-system or database error."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from finflow_core.errors import FinFlowError
from finflow_core.store import exports
from finflow_core.store.faults import translate


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that cannot be written, before anything is read or stored."""
    exports.check_out_dir(Path(out_dir))


def write_csv(frames: pd.DataFrame | Iterable[pd.DataFrame], path: Path) -> None:
    """A report file written to a temporary name and renamed (formula-guarded cells)."""
    exports.write_csv(frames, path)


def as_fault(exc: BaseException) -> FinFlowError | None:
    """A raw error (disk full, read-only folder, a locked or damaged database) as FinFlow's own
    error with its exit code; None when it is none of those."""
    return translate(exc)
