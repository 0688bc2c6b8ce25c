"""The fast path for CSV files without a single quote character (most exports).

Without ``"`` (and without a lone carriage return) a CSV record is exactly one physical
line and its cells are exactly the text between delimiters (commas, or ``dataset.delimiter``), so the file can be cut into lines
and cells by Arrow's compute kernels instead of Python's ``csv`` module, a row at a time
(about twenty times faster). Everything else is the same as :func:`reader.csv_chunks`:
blank lines are not records, records are numbered from 1 after the header, each keeps the
physical line it starts on, a record with the wrong number of cells is kept aside as
*misshapen* with its cells, and chunks hold ``chunk_rows`` records. The first pass over the
file (:func:`reader.open_batch`) decides which path a file takes; tests check that both
give the same chunks.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finflow_core.errors import BatchRejected
from finflow_core.lending.intake.reader import BLOCK, MAX_FIELD, BatchFile, RawChunk

#: Bytes read at a time (cut at the last line break).
READ_BYTES = 8 * BLOCK


def plain_chunks(batch: BatchFile, chunk_rows: int) -> Iterator[RawChunk]:
    """The records of a quote-free CSV batch in chunks of ``chunk_rows``."""
    width = len(batch.header)
    lines: list[str] = []  # records waiting for their chunk (non-blank lines)
    numbers: list[int] = []  # the physical line of each waiting record
    record = 0
    yielded = False
    for block_lines, first_line in _lines(batch):
        _check_cell_sizes(batch, block_lines, first_line)
        keep = [i for i, text in enumerate(block_lines) if text.strip()]  # csv: blank = no record
        lines.extend(block_lines[i] for i in keep)
        numbers.extend(first_line + i for i in keep)
        while len(lines) >= chunk_rows:
            yield _chunk(batch.header, width, lines[:chunk_rows], numbers[:chunk_rows], record,
                         batch.delimiter)
            yielded = True
            record += chunk_rows
            del lines[:chunk_rows], numbers[:chunk_rows]
    if lines or not yielded:
        yield _chunk(batch.header, width, lines, numbers, record, batch.delimiter)


def _check_cell_sizes(batch: BatchFile, lines: list[str], first_line: int) -> None:
    """Refuse a cell over the csv module's field limit, as :func:`reader.csv_chunks` does:
    without it one huge unquoted cell (50 MB of a category) was stored, summarised and
    printed in full, where the same cell in quotes was refused."""
    if not lines or max(map(len, lines)) <= MAX_FIELD:
        return  # no line is longer than the limit, so no cell is
    for i, text in enumerate(lines):
        if len(text) > MAX_FIELD and max(map(len, text.split(batch.delimiter))) > MAX_FIELD:
            line = first_line + i
            raise BatchRejected(
                f"{batch.name}: cannot read the CSV near line {line}: field larger than field "
                f"limit ({MAX_FIELD})", reason="not_csv", line=line)


def _lines(batch: BatchFile) -> Iterator[tuple[list[str], int]]:
    """The file's physical lines after the header, a block at a time, with the first one's
    line number (the header is line 1; the ``\r`` of a ``\r\n`` is dropped)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    rest = ""
    line = 1  # the number of the next physical line
    header = True
    with batch.open_binary() as raw:
        while True:
            block = raw.read(READ_BYTES)
            final = not block
            parts = (rest + decoder.decode(block, final=final)).split("\n")
            rest = "" if final else parts.pop()  # an unfinished last line waits for more
            if final and parts and parts[-1] == "":
                parts.pop()  # the file ends with a line break: no line after it
            parts = [p[:-1] if p.endswith("\r") else p for p in parts]
            if header and parts:
                parts, header, line = parts[1:], False, line + 1
            if parts:
                yield parts, line
                line += len(parts)
            if final:
                return


def _chunk(header: tuple[str, ...], width: int, lines: list[str], line_numbers: list[int],
           before: int, delimiter: str = ",") -> RawChunk:
    """One chunk from its records' lines; ``before`` records came in earlier chunks."""
    records = np.arange(before + 1, before + 1 + len(lines))
    if not lines:
        return RawChunk(pd.DataFrame({h: pd.array([], dtype="str") for h in header}), [], [], [])
    cells = pc.split_pattern(pa.array(lines, type=pa.string()), delimiter)
    counts = pc.list_value_length(cells).to_numpy(zero_copy_only=False)
    ok = counts == width
    misshapen = [(int(records[i]), int(line_numbers[i]), lines[i].split(delimiter))
                 for i in np.flatnonzero(~ok).tolist()]
    if not ok.all():
        cells = cells.filter(pa.array(ok))
    flat = pc.list_flatten(cells)
    n = len(cells)
    frame = pd.DataFrame({
        h: pd.array(flat.take(pa.array(np.arange(j, n * width, width, dtype=np.int64))), dtype="str")
        for j, h in enumerate(header)
    })
    kept = np.flatnonzero(ok)
    return RawChunk(frame, records[kept].tolist(), np.asarray(line_numbers)[kept].tolist(), misshapen)
