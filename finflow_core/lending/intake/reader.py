"""Reading a weekly batch file: is it a batch at all, and its rows as raw text.

Limits come first, before any row is parsed: a file larger than ``limits.max_file_mb`` and
a header with far more columns than the config declares (``limits.max_columns``, by
default twice the declared columns plus 50) are rejected at once, so memory stays bounded
by the file size (a 10,000-column header over 16-cell rows would otherwise cost ~1 MB per
row). A first pass hashes the file and checks it is text in the declared encoding (so a bad
file is rejected before anything is scored or written); a second pass streams its records
in chunks, split by the declared delimiter (:mod:`~finflow_core.lending.intake.file_text`).
Cells stay exactly as written: judging them is the quality gate's job.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from finflow_core.errors import BatchRejected
from finflow_core.lending.config import FINFLOW_CSV, Config, CsvForm, default_config_path
from finflow_core.lending.intake.file_names import display_name, require_file
from finflow_core.lending.intake.file_text import (
    BLOCK,
    AsUtf8,
    decoded,
    encoding_hint,
    encoding_name,
    missing_hint,
)

Source = str | os.PathLike[str] | bytes

MAX_FIELD = 1 << 20
csv.field_size_limit(MAX_FIELD)


@dataclass(frozen=True)
class BatchFile:
    """A file that passed the first look: text, a header with every required column."""

    name: str
    sha256: str
    size: int
    header: tuple[str, ...]
    used_columns: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    source: Source = field(repr=False)
    line_breaks: int = 0
    kind: str = "csv"  # "csv" | "parquet"
    records: int | None = None  # records counted by the first look (Parquet: exact)
    #: no quote character and no lone carriage return: records are lines, cells are the text
    #: between commas (read by the fast path, :mod:`~finflow_core.lending.intake.plain_csv`)
    plain: bool = False
    #: the file's encoding and delimiter (``dataset``); :meth:`open_binary` gives UTF-8 either way
    form: CsvForm = FINFLOW_CSV

    @property
    def encoding(self) -> str:
        return self.form.encoding

    @property
    def delimiter(self) -> str:
        return self.form.delimiter

    @property
    def expected_rows(self) -> int:
        """Records expected: for a CSV its lines less the header and blank lines (exact unless
        cells hold line breaks), for Parquet its record count."""
        return max(self.line_breaks if self.records is None else self.records, 1)

    @property
    def batch_id(self) -> str:
        """Same file, same id: the id is derived from the content hash."""
        return f"B-{self.sha256[:16]}"

    def open_binary(self) -> BinaryIO:
        """The file's bytes as UTF-8 (what every reader here expects), whatever it is encoded in."""
        raw: BinaryIO = io.BytesIO(self.source) if isinstance(self.source, bytes) else open(self.source, "rb")  # noqa: SIM115
        if self.encoding == "utf-8":
            return raw
        return io.BufferedReader(AsUtf8(raw, self.encoding), BLOCK)  # type: ignore[return-value]


@dataclass
class RawChunk:
    """Up to ``chunk_rows`` records, as text, with where they stand in the file."""

    frame: pd.DataFrame  # one column per header name, all str
    row_numbers: list[int]  # 1 = first record after the header
    lines: list[int]  # physical line where the record starts
    misshapen: list[tuple[int, int, list[str]]]  # (row_number, line, cells) with the wrong cell count


def open_batch(
    source: Source, config: Config, *, name: str | None = None, require_target: bool = False,
    form: CsvForm | None = None,
) -> BatchFile:
    """Check that ``source`` is a CSV batch this config can read; raise BatchRejected if not.

    ``form``: the file's encoding and delimiter, if not the config's (a form FinFlow wrote
    itself is :data:`~finflow_core.lending.config.FINFLOW_CSV`).
    """
    form = form or config.csv
    display = display_name(source, name, "upload.csv")
    require_file(source, display)
    check_size(source, config, display)
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with stream:
        check_width(_header_cells(stream.read(BLOCK), form), config, display)
        stream.seek(0)
        sha, size, head, breaks, records, plain = _first_pass(stream, display, form.encoding)
    header = _read_header(head, display, form)
    try:
        used, ignored = split_columns(header, config, display, require_target=require_target,
                                      delimiter=form.delimiter)
    except BatchRejected:
        _reject_structured_text(head, display)  # a JSON or HTML file says so, not "missing columns"
        raise
    return BatchFile(display, sha, size, tuple(header), used, ignored, source, breaks, records=records,
                     plain=plain, form=form)


def check_size(source: Source, config: Config, display: str) -> None:
    """Refuse a file over ``limits.max_file_mb`` before reading it."""
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    limit = config.limits.max_file_mb
    if size > limit * 1024 * 1024:
        raise BatchRejected(
            f"{display}: the file is {size / 1024 / 1024:,.1f} MB, more than the {limit:g} MB "
            "allowed (limits.max_file_mb): split it into smaller batches",
            reason="too_large", size=size, limit_mb=limit)


def check_width(header: Sequence[str], config: Config, display: str) -> None:
    """Refuse a header with far more columns than the config declares (memory per row)."""
    declared = len(config.columns)
    allowed = config.limits.columns_allowed(declared)
    if len(header) > allowed:
        raise BatchRejected(
            f"{display}: the header has {len(header):,} columns; the config declares {declared} "
            f"and at most {allowed:,} are accepted (limits.max_columns): is this the right file?",
            reason="too_many_columns", columns=len(header), allowed=allowed)


def split_columns(
    header: Sequence[str], config: Config, display: str, *, require_target: bool = False,
    delimiter: str = ",",
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The header's used and ignored columns (optional declared columns count as used);
    BatchRejected if a required one is missing or the header is far too wide."""
    check_width(header, config, display)
    required = [c.name for c in config.input_columns]
    if require_target:
        required.append(config.target_column)
    used = {*required, *(c.name for c in config.optional_columns)}
    missing = [c for c in required if c not in header]
    if missing:
        hint = missing_hint(missing, header, delimiter, taken=used)
        if Path(config.source) == default_config_path():  # a lender's file read as the demo's
            hint += (" These are the columns of FinFlow's shipped demo config: a file of your "
                     "own needs a config that describes it (docs/REAL_DATA.md), which whoever "
                     "runs FinFlow sets up (--config or FINFLOW_CONFIG).")
        raise BatchRejected(
            f"{display}: missing required column(s) {', '.join(missing)}.{hint}",
            reason="missing_columns", missing=missing, found=list(header),
        )
    return tuple(c for c in header if c in used), tuple(c for c in header if c not in used)


def csv_chunks(batch: BatchFile, chunk_rows: int = 100_000) -> Iterator[RawChunk]:
    """Stream the records of a CSV batch in chunks with the csv module (quotes, embedded line
    breaks); blank lines are not records. Use :func:`~finflow_core.lending.intake.sources.iter_chunks`,
    which picks the reader a file needs."""
    with batch.open_binary() as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""),
                            delimiter=batch.delimiter)
        next(reader)  # header, already checked
        width = len(batch.header)
        rows: list[list[str]] = []
        numbers: list[int] = []
        lines: list[int] = []
        misshapen: list[tuple[int, int, list[str]]] = []
        record = 0
        line = reader.line_num + 1
        start = line
        try:
            for cells in reader:
                start, line = line, reader.line_num + 1
                if not cells or (len(cells) == 1 and cells[0].strip() == ""):
                    continue
                record += 1
                if len(cells) != width:
                    misshapen.append((record, start, cells))
                else:
                    rows.append(cells)
                    numbers.append(record)
                    lines.append(start)
                if len(rows) + len(misshapen) >= chunk_rows:
                    yield make_chunk(batch.header, rows, numbers, lines, misshapen)
                    rows, numbers, lines, misshapen = [], [], [], []
        except csv.Error as exc:
            raise BatchRejected(
                f"{batch.name}: cannot read the CSV near line {reader.line_num}: {exc}",
                reason="not_csv", line=reader.line_num,
            ) from exc
        # An unclosed quote swallows every later line into the last record, so only the
        # last record can hold one; read its raw text again only when it spans lines.
        if line - start > 1:
            _check_quotes_closed(batch, _raw_lines_from(batch, start), start)
        if rows or misshapen or record == 0:
            yield make_chunk(batch.header, rows, numbers, lines, misshapen)


def _raw_lines_from(batch: BatchFile, first_line: int) -> str:
    with batch.open_binary() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        return "".join(line for i, line in enumerate(text, start=1) if i >= first_line)


def _check_quotes_closed(batch: BatchFile, raw: str, line: int) -> None:
    """Reject a record whose quoted cell never closes: it swallowed every line after it.

    The lenient CSV reader reads an unclosed quote to the end of the file as one cell, so
    all later records would vanish into one quarantined row instead of being counted.
    """
    if '"' not in raw:
        return
    ends = batch.delimiter + "\r\n"
    state = 0  # 0 start of a cell, 1 unquoted cell, 2 quoted cell, 3 quote inside a quoted cell
    for ch in raw:
        if state == 2:
            if ch == '"':
                state = 3
        elif ch in ends:
            state = 0
        elif state in (0, 3):  # a quote opens a cell, or doubles one inside a quoted cell
            state = 2 if ch == '"' else 1
    if state == 2:
        raise BatchRejected(
            f"{batch.name}: the quoted cell that starts on line {line} is never closed, so "
            "every line after it would be read as part of that cell. Close or remove the "
            "quote and upload the file again.",
            reason="unclosed_quote", line=line,
        )


def make_chunk(
    header: tuple[str, ...], rows: list[list[str]], numbers: list[int], lines: list[int],
    misshapen: list[tuple[int, int, list[str]]],
) -> RawChunk:
    """A chunk from records already split into cells (text columns, Arrow-backed)."""
    # one Arrow-backed text column per header name: fast vectorised string checks later
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    frame = pd.DataFrame({
        h: pd.array(pa.array(col, type=pa.string()), dtype="str")
        for h, col in zip(header, cols, strict=True)
    })
    return RawChunk(frame, numbers, lines, misshapen)


def _first_pass(stream: BinaryIO, display: str,
                encoding: str = "utf-8") -> tuple[str, int, bytes, int, int, bool]:
    """SHA-256, size, first block, line breaks, records expected (lines less the header and
    empty lines) and whether the file is plain (no quote, no lone carriage return: see
    :attr:`BatchFile.plain`), after checking every byte is text in ``encoding``."""
    sha = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)()
    size, offset, head, breaks, empty, tail = 0, 0, b"", 0, 0, b""
    plain = True
    while block := stream.read(BLOCK):
        breaks += block.count(b"\n")
        empty += _empty_lines(tail + block) - _empty_lines(tail)
        tail = block[-2:]
        if plain:  # a "\r\n" split between two blocks merely sends the file the csv way
            plain = b'"' not in block and block.count(b"\r") == block.count(b"\r\n")
        if size == 0:
            head = block
            _reject_utf16(block, display)
            _reject_binary(block, display)
        if b"\x00" in block:
            raise BatchRejected(
                f"{display}: the file contains binary data (NUL bytes), so it is not a CSV text file",
                reason="not_csv",
            )
        try:
            decoder.decode(block)
        except UnicodeDecodeError as exc:
            raise BatchRejected(
                f"{display}: the file is not {encoding_name(encoding)} text (byte "
                f"0x{block[exc.start]:02x} at offset {offset + exc.start}). {encoding_hint(encoding)}",
                reason="encoding", offset=offset + exc.start, encoding=encoding,
            ) from exc
        sha.update(block)
        size += len(block)
        offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise BatchRejected(
            f"{display}: the file ends in the middle of a {encoding_name(encoding)} character",
            reason="encoding", encoding=encoding,
        ) from exc
    if size == 0 or not head.removeprefix(codecs.BOM_UTF8).strip():
        raise BatchRejected(f"{display}: the file is empty", reason="empty")
    lines = breaks + (not tail.endswith(b"\n"))
    return sha.hexdigest(), size, head, breaks, max(lines - 1 - empty, 0), plain


_EMPTY_LINE = re.compile(rb"\n(?=\r?\n)")


def _empty_lines(text: bytes) -> int:
    """Empty lines (LF or CRLF) that start inside ``text``: a line break followed by another."""
    return len(_EMPTY_LINE.findall(text))


def _reject_binary(block: bytes, display: str) -> None:
    signatures = {
        b"PK\x03\x04": "an Excel workbook or zip archive",
        b"\xd0\xcf\x11\xe0": "an old Excel or Word file",
        b"%PDF": "a PDF",
        b"PAR1": "a Parquet file",
        b"\x89PNG": "an image",
        b"\xff\xd8\xff": "an image",
    }
    for magic, what in signatures.items():
        if block.startswith(magic):
            raise BatchRejected(
                f"{display}: this is {what}, not a CSV file. Export the sheet as 'CSV UTF-8'.",
                reason="not_csv",
            )


def _reject_utf16(block: bytes, display: str) -> None:
    """UTF-16/32 text (Excel's 'Unicode Text') is full of NUL bytes: name the real problem."""
    if block.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BatchRejected(
            f"{display}: the file is UTF-16/UTF-32 text, not UTF-8. Save it as 'CSV UTF-8' and "
            "upload it again.",
            reason="encoding", offset=0,
        )


def _reject_structured_text(head: bytes, display: str) -> None:
    """Text that is JSON, HTML or XML rather than a CSV table."""
    start = head.decode("utf-8-sig", errors="ignore").lstrip()[:1]
    kinds = {"{": "JSON", "[": "JSON", "<": "HTML or XML"}
    if start in kinds:
        raise BatchRejected(
            f"{display}: this looks like {kinds[start]} text, not a CSV file. Export the data as "
            "comma-separated CSV with a header row.",
            reason="not_csv",
        )


def _header_cells(head: bytes, form: CsvForm = FINFLOW_CSV) -> list[str]:
    """The first record's cells, leniently (for the width limit; bad files are judged later)."""
    try:
        return next(csv.reader(io.StringIO(decoded(head, form.encoding)), delimiter=form.delimiter), [])
    except csv.Error:
        return []


def _read_header(head: bytes, display: str, form: CsvForm = FINFLOW_CSV) -> list[str]:
    text = decoded(head, form.encoding)
    try:
        first = next(csv.reader(io.StringIO(text), delimiter=form.delimiter))
    except (StopIteration, csv.Error) as exc:
        raise BatchRejected(f"{display}: no header row found", reason="not_csv") from exc
    header = [h.strip() for h in first]
    if not any(header):
        what = "is blank" if len(header) <= 1 else f"holds {len(header)} empty names"
        raise BatchRejected(f"{display}: the first line {what}; it must name the columns", reason="not_csv")
    seen: set[str] = set()
    for i, h in enumerate(header, 1):
        if h == "" and "" in seen:
            raise BatchRejected(f"{display}: the header has columns without a name (column {i} is "
                                "one of them): name every column", reason="duplicate_columns", column=h)
        if h in seen:
            raise BatchRejected(f"{display}: column {h!r} appears twice in the header", reason="duplicate_columns", column=h)
        seen.add(h)
    return header
