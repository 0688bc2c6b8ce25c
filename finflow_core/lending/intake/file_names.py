"""What a batch or outcome file is called in messages and in the store, and that a path
names a file at all (checked before anything is read)."""

from __future__ import annotations

import os
from pathlib import Path

from finflow_core.errors import BatchRejected
from finflow_core.formatting import clean

#: A file to read: its path, or its bytes (an upload); as in the reader.
Source = str | os.PathLike[str] | bytes


def display_name(source: Source, name: str | None, default: str) -> str:
    """The file's name as messages and the stored batch show it: line breaks and tabs as
    spaces, other control and direction-override characters left out (a name with a line
    break split its line in `finflow batches list` and in every one-line message)."""
    raw = name or (Path(source).name if not isinstance(source, bytes) else default)
    return clean(raw).strip() or default


def require_file(source: Source, display: str) -> None:
    """A path must name a regular file: a folder, device or pipe is named as such, not as
    "file not found" (a pipe would be read forever, ``/dev/zero`` without end)."""
    if isinstance(source, bytes) or Path(source).is_file():
        return
    path = Path(source)
    what = ("a folder" if path.is_dir() else "a device, pipe or socket" if path.exists()
            else None)
    if what is None:
        raise BatchRejected(f"{display}: file not found", reason="not_found", file=str(source))
    raise BatchRejected(f"{display} is {what}, not a file: name the CSV or Parquet file itself",
                        reason="not_a_file", file=str(source))
