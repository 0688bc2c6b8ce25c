"""The quality gate: every row of a batch is either valid or quarantined with its reasons.

``rows_in == rows_valid + rows_quarantined`` always holds. A quarantined row keeps its
cells exactly as written, with one issue per broken rule: row number, column, rule and
offending value. Valid rows go on typed; nothing is silently changed or dropped: where a
column's policy keeps a row with an undeclared code (read as missing, or as the declared
``other`` category), the cells as written stay unchanged and every such value is counted
in ``mapped`` (column, value as written, mapped_to, count).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from finflow_core import formatting as fmt
from finflow_core.errors import BatchRejected
from finflow_core.lending.config import ColumnSpec, Config, CsvForm
from finflow_core.lending.intake.form_hints import form_hint
from finflow_core.lending.intake.reader import BatchFile, RawChunk, Source, open_batch
from finflow_core.lending.intake.schema import (
    MAPPED_COLUMNS,
    RULES,
    ReadColumn,
    mapped_values,
    missing_column,
    read_column,
    reading_rule,
    typed_column,
    value_schema,
)
from finflow_core.lending.intake.sources import iter_chunks

ISSUE_COLUMNS = ["row_number", "line", "application_id", "column", "rule", "value", "message"]
PANDERA_RULES = {"field_uniqueness": "duplicate_id", "not_nullable": "not_null"}


def no_mappings() -> pd.DataFrame:
    """An empty value-mapping count (:data:`MAPPED_COLUMNS`)."""
    return pd.DataFrame({k: pd.Series(dtype=object if k != "count" else np.int64)
                         for k in MAPPED_COLUMNS})


def merge_mappings(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Add up value-mapping counts of several chunks (most frequent first)."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return no_mappings()
    total = pd.concat(frames, ignore_index=True).groupby(
        ["column", "value", "mapped_to"], sort=False, as_index=False)["count"].sum()
    total["count"] = total["count"].astype(np.int64)
    return total.sort_values(["column", "count", "value"], ascending=[True, False, True],
                             kind="stable").reset_index(drop=True)[MAPPED_COLUMNS]


#: Characters of a mapped cell shown in a warning line (the export keeps the whole cell).
SHOWN_VALUE = 60


def mapping_lines(mapped: pd.DataFrame) -> list[str]:
    """The counts for people: ``industry: 'XX' ×12 mapped to missing`` (a long cell clipped:
    a file may hold a code of a megabyte)."""
    return [f"{r.column}: {fmt.clip(str(r.value), SHOWN_VALUE)!r} ×{r.count:,} mapped to "
            f"{r.mapped_to}" for r in mapped.itertuples(index=False)]


@dataclass
class ChunkResult:
    valid: pd.DataFrame  # typed input columns, RangeIndex
    row_numbers: np.ndarray  # row number of each valid row
    quarantined: pd.DataFrame  # row_number, line, reasons, then the row's cells as written
    issues: pd.DataFrame  # ISSUE_COLUMNS
    valid_raw: pd.DataFrame | None = None  # the valid rows' cells exactly as written
    #: kept rows' cells read as something else (MAPPED_COLUMNS); add chunks with merge_mappings
    mapped: pd.DataFrame = field(default_factory=no_mappings)

    @property
    def rows_in(self) -> int:
        return len(self.valid) + len(self.quarantined)


@dataclass
class ValidationReport:
    """The quality-gate result of a whole batch."""

    batch: BatchFile
    valid: pd.DataFrame
    row_numbers: np.ndarray
    quarantined: pd.DataFrame
    issues: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    mapped: pd.DataFrame = field(default_factory=no_mappings)

    @property
    def rows_valid(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def rows_in(self) -> int:
        return self.rows_valid + self.rows_quarantined

    def rule_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.issues["rule"].value_counts().items()}

    def mapping_lines(self) -> list[str]:
        return mapping_lines(self.mapped)


class BatchValidator:
    """Validates a batch chunk by chunk; remembers ids so duplicates are caught across chunks.

    Parameters
    ----------
    config : the dataset's declared schema.
    require_target : also require and check the target column (training data).
    """

    def __init__(
        self, config: Config, require_target: bool = False, seen_ids: dict[str, int] | None = None
    ) -> None:
        self.config = config
        self.require_target = require_target
        self.seen_ids = seen_ids
        # every declared batch column; optional ones (protected, required: false) may be absent
        self.columns: list[ColumnSpec] = list(config.batch_columns)
        if require_target:
            self.columns.append(config.column(config.target_column))
        self._id = config.id_column
        # application id -> row it first appeared on (ids from earlier partitions may be given)
        self._first_row: dict[str, int] = dict(seen_ids or {})
        self._chunk_rows = np.array([], dtype=np.int64)
        self._schemas: dict[tuple[str, ...], pa.DataFrameSchema] = {}

    def _schema(self, present: list[ColumnSpec]) -> pa.DataFrameSchema:
        """The value schema of the columns a file carries (one per header shape)."""
        key = tuple(c.name for c in present)
        if key not in self._schemas:
            schema = value_schema(present)
            schema.columns[self._id].checks.append(
                pa.Check(self._not_seen, name="duplicate_id", ignore_na=True)
            )
            self._schemas[key] = schema
        return self._schemas[key]

    def validate(self, chunk: RawChunk) -> ChunkResult:
        raw = chunk.frame
        n = len(raw)
        present = [c for c in self.columns if c.name in raw.columns]
        absent = [c for c in self.columns if c.name not in raw.columns]
        if any(c.required for c in absent):  # open_batch refuses such a file first
            missing = [c.name for c in absent if c.required]
            raise BatchRejected(f"missing required column(s) {', '.join(missing)}",
                                reason="missing_columns", missing=missing)
        names = [c.name for c in present]
        raw_used = raw[names].reset_index(drop=True)
        self._chunk_rows = np.asarray(chunk.row_numbers, dtype=np.int64)
        read = {c.name: read_column(raw_used[c.name], c) for c in present}
        failures = [self._reading_failures(raw_used, read, present)]
        if n:
            values = pd.DataFrame({name: r.values for name, r in read.items()})
            fc = _failures(self._schema(present), values)
            # a cell that could not be read is missing here: it was judged by its reading rule
            unread = np.array([read[c].unreadable[i] if c in read else False
                               for c, i in zip(fc["column"], fc["index"].astype(int), strict=True)],
                              dtype=bool)
            failures.append(fc[~unread])
        failures = [f for f in failures if len(f)]
        fc = pd.concat(failures, ignore_index=True) if failures else _empty_failures()

        # remember ids (first occurrence wins) for later chunks
        ids = raw_used[self._id].astype(str)
        dup_within = ids.duplicated(keep="first").to_numpy()
        for rid, rn in zip(ids[~dup_within], self._chunk_rows[~dup_within], strict=True):
            self._first_row.setdefault(rid, int(rn))

        bad_pos = np.unique(fc["index"].to_numpy(dtype=np.int64)) if len(fc) else np.array([], dtype=np.int64)
        good = np.ones(n, dtype=bool)
        good[bad_pos] = False

        if len(fc) or chunk.misshapen:
            issues = self._issues(fc, raw_used, chunk)
            issues = pd.concat([issues, self._shape_issues(chunk)], ignore_index=True)
            quarantined = self._quarantine(raw, chunk, bad_pos, issues)
        else:  # the common case: nothing to report
            issues = pd.DataFrame(columns=ISSUE_COLUMNS)
            quarantined = pd.DataFrame(columns=["row_number", "line", "reasons", *raw.columns])
        valid_raw = raw_used[good].reset_index(drop=True)
        kept = int(good.sum())
        valid = pd.DataFrame({
            c.name: typed_column(read[c.name], c, good) if c.name in read else missing_column(c, kept)
            for c in self.columns
        })
        mapped = [mapped_values(read[c.name], c, raw_used[c.name], good) for c in present
                  if c.maps_unknown or c.missing_values]
        return ChunkResult(valid, self._chunk_rows[good], quarantined, issues, valid_raw,
                           merge_mappings(mapped))

    def _reading_failures(self, raw: pd.DataFrame, read: dict[str, ReadColumn],
                          present: list[ColumnSpec]) -> pd.DataFrame:
        parts = []
        for c in present:
            r = read[c.name]
            if r.unreadable.any():
                parts.append(pd.DataFrame({
                    "column": c.name, "check": reading_rule(c, raw[c.name], r.unreadable),
                    "failure_case": raw[c.name][r.unreadable].to_numpy(dtype=object),
                    "index": np.flatnonzero(r.unreadable),
                }))
        return pd.concat(parts, ignore_index=True) if parts else _empty_failures()

    # -- checks with state ---------------------------------------------------------------
    def _not_seen(self, s: pd.Series) -> pd.Series:
        text = s.astype(str)
        # a dict lookup per id: isin() would re-hash every id seen so far for each chunk
        earlier = text.map(self._first_row.__contains__).astype(bool)
        return ~(text.duplicated(keep="first") | earlier)

    # -- building the report ---------------------------------------------------------------
    def _issues(self, fc: pd.DataFrame, raw: pd.DataFrame, chunk: RawChunk) -> pd.DataFrame:
        if fc.empty:
            return pd.DataFrame(columns=ISSUE_COLUMNS)
        pos = fc["index"].to_numpy(dtype=np.int64)
        cols = fc["column"].astype(str).to_numpy()
        rules = [PANDERA_RULES.get(str(r), str(r)) for r in fc["check"]]
        values = [raw.iat[p, raw.columns.get_loc(c)] for p, c in zip(pos, cols, strict=True)]
        rows = np.asarray(chunk.row_numbers)[pos]
        ids = raw[self._id].to_numpy()[pos]
        df = pd.DataFrame(
            {
                "row_number": rows,
                "line": np.asarray(chunk.lines)[pos],
                "application_id": ids,
                "column": cols,
                "rule": rules,
                "value": values,
            }
        )
        df = df.drop_duplicates(["row_number", "column", "rule"])
        df["message"] = [self._message(r) for r in df.itertuples(index=False)]
        return df.sort_values(["row_number", "column"], kind="stable").reset_index(drop=True)[ISSUE_COLUMNS]

    def _message(self, issue: tuple) -> str:
        col, rule, value = issue.column, issue.rule, issue.value
        base = f"{col}: {RULES.get(rule, rule)}"
        shown = "(blank)" if value is None or str(value).strip() == "" else repr(value)
        if rule == "in_range":
            spec = self.config.column(col)
            lo = "" if spec.min is None else f"{spec.min:g}"
            hi = "" if spec.max is None else f"{spec.max:g}"
            return f"{base} [{lo} to {hi}], got {shown}"
        if rule == "category":
            allowed = ", ".join(self.config.column(col).categories)
            return f"{base} ({allowed}), got {shown}"
        if rule == "duplicate_id":
            first = self._first_row.get(str(value))
            where = f" on row {first}" if first is not None and first != issue.row_number else ""
            return f"{base}{where}: {shown}"
        if rule == "max_length":
            return f"{base} (at most {self.config.column(col).max_length} characters)"
        if rule in ("number", "integer"):
            hint = form_hint(self.config.column(col), value)
            return f"{base}, got {shown}" + (f" ({hint})" if hint else "")
        return f"{base}, got {shown}"

    def _shape_issues(self, chunk: RawChunk) -> pd.DataFrame:
        width = len(chunk.frame.columns)
        at = list(chunk.frame.columns).index(self._id)  # the id need not be the first column
        rows = [
            {
                "row_number": rn, "line": line, "application_id": cells[at] if at < len(cells) else "",
                "column": "(row)", "rule": "field_count", "value": f"{len(cells)} cells",
                "message": f"the row has {len(cells)} cells but the header has {width} columns",
            }
            for rn, line, cells in chunk.misshapen
        ]
        return pd.DataFrame(rows, columns=ISSUE_COLUMNS)

    def _quarantine(
        self, raw: pd.DataFrame, chunk: RawChunk, bad_pos: np.ndarray, issues: pd.DataFrame
    ) -> pd.DataFrame:
        header = list(raw.columns)
        reasons = issues.groupby("row_number", sort=False)["message"].agg("; ".join)
        bad = raw.iloc[bad_pos].reset_index(drop=True)
        bad.insert(0, "line", np.asarray(chunk.lines, dtype=np.int64)[bad_pos])
        bad.insert(0, "row_number", np.asarray(chunk.row_numbers, dtype=np.int64)[bad_pos])
        shaped = []
        for rn, line, cells in chunk.misshapen:
            rec = {"row_number": rn, "line": line}
            rec.update({h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header)})
            if len(cells) > len(header):
                rec["(extra cells)"] = ",".join(cells[len(header):])
            shaped.append(rec)
        if shaped:
            bad = pd.concat([bad, pd.DataFrame(shaped)], ignore_index=True)
        if bad.empty:
            return pd.DataFrame(columns=["row_number", "line", "reasons", *header])
        bad.insert(2, "reasons", bad["row_number"].map(reasons).fillna(""))
        return bad.sort_values("row_number", kind="stable").reset_index(drop=True)


def validate_chunks(batch: BatchFile, config: Config, *, chunk_rows: int = 100_000,
                    require_target: bool = False) -> Iterator[ChunkResult]:
    validator = BatchValidator(config, require_target=require_target)
    for chunk in iter_chunks(batch, chunk_rows):
        yield validator.validate(chunk)


def validate_batch(
    source: Source | BatchFile, config: Config, *, name: str | None = None,
    require_target: bool = False, form: CsvForm | None = None,
) -> ValidationReport:
    """Validate a whole batch in memory (the weekly run streams large ones in chunks);
    ``form`` as for :func:`~finflow_core.lending.intake.reader.open_batch`."""
    batch = source if isinstance(source, BatchFile) else open_batch(
        source, config, name=name, require_target=require_target, form=form
    )
    parts = list(validate_chunks(batch, config, chunk_rows=10**9, require_target=require_target))
    report = ValidationReport(
        batch=batch,
        valid=pd.concat([p.valid for p in parts], ignore_index=True),
        row_numbers=np.concatenate([p.row_numbers for p in parts]),
        quarantined=pd.concat([p.quarantined for p in parts], ignore_index=True),
        issues=pd.concat([p.issues for p in parts], ignore_index=True),
        warnings=ignored_column_warnings(batch, config),
        mapped=merge_mappings(p.mapped for p in parts),
    )
    if report.rows_in == 0:
        raise BatchRejected(f"{batch.name}: the file has a header but no applications", reason="no_rows")
    return report


def ignored_column_warnings(batch: BatchFile, config: Config | None = None) -> list[str]:
    """What a person should know about the header: ignored columns, absent optional ones."""
    optional = {c.name for c in config.optional_columns} if config is not None else set()
    ignored = [c for c in batch.ignored_columns if c not in optional]
    out = []
    if ignored:
        out.append(f"ignored column(s) not used for scoring: {', '.join(ignored)}")
    absent = [c for c in sorted(optional) if c not in batch.header]
    if absent:
        out.append(f"optional column(s) not in the file: {', '.join(absent)} (read as missing; "
                   "approval rates by these groups cannot be shown for this batch)")
    return out


def _failures(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        fc = fc[fc["index"].notna()]
        return fc[["column", "check", "failure_case", "index"]].reset_index(drop=True)
    return _empty_failures()


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame({"column": [], "check": [], "failure_case": [], "index": []})
