"""The quality gate of an outcome file: who defaulted, who repaid, as the servicing system says.

An outcome file has one row per loan: the application id as submitted, whether it
defaulted, the date the outcome was observed, and optionally the amount lost, the days
past due (30 / 60 / 90+, for early-delinquency curves) and the batch it belongs to (when
an id was submitted in several batches). The column names and the words for "defaulted"
and "repaid" are declared in the config (``outcomes:``, :class:`OutcomeSpec`), so a lender's
own export fits.

This gate judges each row on its own (readable, allowed values, consistent within the
file); whether the ids exist, were funded or already have an outcome is for the service
that links the file to the store. Nothing is applied from a file with any issue.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO

import pandas as pd
import pandera.pandas as pa

from finflow_core.errors import BatchRejected
from finflow_core.lending.config import FINFLOW_CSV, CsvForm, OutcomeSpec
from finflow_core.lending.intake.file_names import display_name, require_file
from finflow_core.lending.intake.reader import (
    BatchFile,
    Source,
    _first_pass,
    _read_header,
    _reject_structured_text,
)
from finflow_core.lending.intake.schema import DATE_PATTERN, NUMBER_PATTERN, in_calendar
from finflow_core.lending.intake.sources import iter_chunks
from finflow_core.lending.spreadsheet import FORMULA_PATTERN

ISSUE_COLUMNS = ["row_number", "line", "application_id", "column", "rule", "value", "message"]
OUTCOME_RULES: dict[str, str] = {
    "not_null": "a value is required",
    "outcome": "must say whether the loan defaulted",
    "date": "must be a date written YYYY-MM-DD",
    "future_date": "the outcome date is in the future",
    "number": "must be a number",
    "integer": "must be a whole number",
    "in_range": "must not be negative",
    "loss_without_default": "a loss is given for a loan that did not default",
    "formula": "text that a spreadsheet would run as a formula",
    "duplicate": "the same loan appears again in the file",
    "conflicting_outcome": "the file gives this loan two different outcomes",
    "field_count": "the row does not have one cell per column",
    "unknown_application": "no stored application has this id",
    "ambiguous_application": "the id was submitted in several batches: add a batch_id column",
    "not_funded": "the application was never funded, so it has no outcome",
    "already_recorded": "an outcome is already recorded: load it as a correction",
    "before_application": "the outcome date is before the week the application was decided",
}


@dataclass
class OutcomeFile:
    """An outcome file through the gate: typed rows and every issue found."""

    file: BatchFile
    rows: pd.DataFrame  # row_number, line, application_id, batch_id, defaulted, observed_on, amount_lost, days_past_due
    issues: pd.DataFrame  # ISSUE_COLUMNS
    spec: OutcomeSpec = OutcomeSpec()

    @property
    def ok(self) -> bool:
        return self.issues.empty

    @property
    def rows_in(self) -> int:
        return len(self.rows)

    def rule_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.issues["rule"].value_counts().items()}


def open_outcome_file(source: Source, spec: OutcomeSpec, *, name: str | None = None,
                      form: CsvForm = FINFLOW_CSV) -> BatchFile:
    """Check that ``source`` is a CSV outcome file (written as ``form`` says: the lender's
    files'); raise :class:`BatchRejected` if not."""
    display = display_name(source, name, "outcomes.csv")
    require_file(source, display)
    stream: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with stream:
        sha, size, head, breaks, records, _ = _first_pass(stream, display, form.encoding)
    header = _read_header(head, display, form)
    missing = [c for c in spec.required if c not in header]
    if missing:
        _reject_structured_text(head, display)
        raise BatchRejected(
            f"{display}: not an outcome file: missing column(s) {', '.join(missing)} (an outcome "
            f"file needs {', '.join(spec.required)}; optional {', '.join(spec.optional)})",
            reason="missing_columns", missing=missing, found=list(header),
        )
    used = tuple(c for c in header if c in (*spec.required, *spec.optional))
    ignored = tuple(c for c in header if c not in used)
    return BatchFile(display, sha, size, tuple(header), used, ignored, source, breaks, records=records,
                     form=form)


def read_outcomes(source: Source | BatchFile, spec: OutcomeSpec | None = None, *,
                  today: date | None = None, name: str | None = None,
                  form: CsvForm = FINFLOW_CSV) -> OutcomeFile:
    """Read and judge every row of an outcome file (nothing is stored here)."""
    spec = spec or OutcomeSpec()
    file = source if isinstance(source, BatchFile) else open_outcome_file(source, spec, name=name,
                                                                           form=form)
    today = today or date.today()
    frames, issues = [], []
    at = file.header.index(spec.id_column)
    for raw in iter_chunks(file, 10**9):
        frame = raw.frame.assign(row_number=raw.row_numbers, line=raw.lines)
        frames.append(frame)
        issues += [_issue(rn, line, cells[at] if at < len(cells) else "", "(row)", "field_count",
                          f"{len(cells)} cells") for rn, line, cells in raw.misshapen]
    raw_rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if raw_rows.empty and not issues:
        raise BatchRejected(f"{file.name}: the file has a header but no outcomes", reason="no_rows")
    rows, found = _judge(raw_rows, spec, today)
    issues_frame = pd.DataFrame(issues + found, columns=ISSUE_COLUMNS)
    issues_frame = issues_frame.sort_values(["row_number", "column"], kind="stable").reset_index(drop=True)
    return OutcomeFile(file, rows, issues_frame, spec)


def _judge(raw: pd.DataFrame, spec: OutcomeSpec, today: date) -> tuple[pd.DataFrame, list[dict]]:
    """Typed rows and the issues of every cell and of the file as a whole."""
    if raw.empty:
        return _empty_rows(), []
    text = {c: raw[c].astype("str").str.strip() if c in raw else pd.Series("", index=raw.index)
            for c in (*spec.required, *spec.optional)}
    ids = text[spec.id_column]
    word = text[spec.defaulted_column].str.lower()
    truth = spec.truth
    defaulted = word.map(lambda w: truth.get(w))
    written = text[spec.observed_column]
    readable = (written != "") if spec.date_format else written.str.fullmatch(DATE_PATTERN).fillna(False)
    observed = in_calendar(pd.to_datetime(written.where(readable),
                                          format=spec.date_format or "%Y-%m-%d", errors="coerce"))
    loss_text, dpd_text = text[spec.loss_column], text[spec.dpd_column]
    loss = pd.to_numeric(loss_text.where(loss_text.str.fullmatch(NUMBER_PATTERN).fillna(False)), errors="coerce")
    dpd = pd.to_numeric(dpd_text.where(dpd_text.str.fullmatch(NUMBER_PATTERN).fillna(False)), errors="coerce")
    typed = pd.DataFrame({
        "row_number": raw["row_number"].astype(int), "line": raw["line"].astype(int),
        "application_id": ids,
        "batch_id": pd.Series([b or None for b in text[spec.batch_column].tolist()], index=raw.index,
                              dtype=object),
        "defaulted": defaulted, "observed_on": observed.dt.date,
        "amount_lost": loss, "days_past_due": dpd,
    })
    frame = pd.DataFrame({
        spec.id_column: ids.where(ids != ""), "defaulted_known": defaulted.notna(),
        "observed_ok": observed.notna() | (text[spec.observed_column] == ""),
        "observed_text": text[spec.observed_column], "observed": observed,
        "loss_text": loss_text, "loss": loss, "dpd_text": dpd_text, "dpd": dpd, "defaulted": defaulted,
    })
    failures = _value_failures(frame, spec, today)
    found = [_issue(int(typed.at[i, "row_number"]), int(typed.at[i, "line"]), ids.iat[i], column, rule,
                    _shown(column, raw, i, spec)) for i, column, rule in failures]
    hint = _words_hint(spec)
    found = [{**f, "message": f"{f['message']} ({hint})"} if f["rule"] == "outcome" else f
             for f in found]
    if spec.date_format:  # the message names the form the config declares
        found = [{**f, "message": f["message"].replace(
            "written YYYY-MM-DD", f"written as outcomes.date_format says ({spec.date_format})")}
            if f["rule"] == "date" else f for f in found]
    found += _file_issues(typed)
    return typed, found


def _words_hint(spec: OutcomeSpec) -> str:
    """Which words the file may use for an outcome, and where to declare others."""
    return (f"defaulted: {', '.join(spec.defaulted_words)}; not defaulted: "
            f"{', '.join(spec.repaid_words)}; a file with other words declares them under "
            "outcomes: defaulted_words / repaid_words in the config")


def _value_failures(frame: pd.DataFrame, spec: OutcomeSpec, today: date) -> list[tuple[int, str, str]]:
    """(row position, column, rule) of every failed check, judged by a pandera schema."""
    checks = {
        spec.id_column: [pa.Check(lambda s: ~s.str.match(FORMULA_PATTERN).fillna(False), name="formula",
                                  ignore_na=True)],
        "defaulted_known": [pa.Check(lambda s: s, name="outcome")],
        "observed_ok": [pa.Check(lambda s: s, name="date")],
        "observed": [pa.Check(lambda s: s.dt.date <= today, name="future_date", ignore_na=True)],
        "loss_text": [pa.Check(lambda s: (s == "") | s.str.fullmatch(NUMBER_PATTERN).fillna(False),
                               name="number")],
        "loss": [pa.Check(lambda s: s >= 0, name="in_range", ignore_na=True)],
        "dpd_text": [pa.Check(lambda s: (s == "") | s.str.fullmatch(NUMBER_PATTERN).fillna(False),
                              name="number")],
        "dpd": [pa.Check(lambda s: (s >= 0) & (s % 1 == 0), name="integer", ignore_na=True)],
    }
    columns = {name: pa.Column(None, c, nullable=name != spec.id_column) for name, c in checks.items()}
    schema = pa.DataFrameSchema(columns, strict=False,
                                checks=[pa.Check(lambda df: ~((df["loss"] > 0) & (df["defaulted"] == False)),  # noqa: E712
                                                 name="loss_without_default")])
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases[exc.failure_cases["index"].notna()]
        names = {"defaulted_known": spec.defaulted_column, "observed_ok": spec.observed_column,
                 "observed": spec.observed_column, "loss_text": spec.loss_column, "loss": spec.loss_column,
                 "dpd_text": spec.dpd_column, "dpd": spec.dpd_column, None: spec.loss_column}
        out = []
        for r in fc.itertuples(index=False):
            rule = "not_null" if r.check == "not_nullable" else str(r.check)
            if rule == "loss_without_default":  # a check of the whole row: report it once
                column = spec.loss_column
            else:
                column = spec.id_column if r.column == spec.id_column else names.get(r.column, spec.loss_column)
            out.append((int(r.index), column, rule))
        return sorted(set(out))
    return []


def _file_issues(rows: pd.DataFrame) -> list[dict]:
    """The same loan twice: a repeat is reported once; two different outcomes, on both rows."""
    key = rows["application_id"] + "\x00" + rows["batch_id"].fillna("")
    repeated = key.duplicated(keep=False) & (rows["application_id"] != "")
    if not repeated.any():
        return []
    out = []
    content = ["defaulted", "observed_on", "amount_lost", "days_past_due"]
    for _, group in rows[repeated].groupby(key[repeated], sort=False):
        distinct = group[content].astype(str).drop_duplicates()
        rule = "conflicting_outcome" if len(distinct) > 1 else "duplicate"
        targets = group if rule == "conflicting_outcome" else group.iloc[1:]
        first = int(group["row_number"].iloc[0])
        out += [_issue(int(r.row_number), int(r.line), r.application_id, "(row)", rule,
                       f"also on row {first}" if int(r.row_number) != first else
                       f"also on row {int(group['row_number'].iloc[1])}")
                for r in targets.itertuples(index=False)]
    return out


def _shown(column: str, raw: pd.DataFrame, i: int, spec: OutcomeSpec) -> str:
    return str(raw[column].iat[i]) if column in raw else ""


def _issue(row: int, line: int, application_id: object, column: str, rule: str, value: str) -> dict:
    shown = "(blank)" if not str(value).strip() else repr(str(value))
    return {"row_number": row, "line": line, "application_id": str(application_id or ""), "column": column,
            "rule": rule, "value": value, "message": f"{column}: {OUTCOME_RULES.get(rule, rule)}, got {shown}"
            if column != "(row)" else f"{OUTCOME_RULES.get(rule, rule)} ({value})"}


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame({"row_number": pd.Series(dtype=int), "line": pd.Series(dtype=int),
                         "application_id": pd.Series(dtype=object), "batch_id": pd.Series(dtype=object),
                         "defaulted": pd.Series(dtype=object), "observed_on": pd.Series(dtype=object),
                         "amount_lost": pd.Series(dtype=float), "days_past_due": pd.Series(dtype=float)})


def issue_row(row: int, line: int, application_id: str, column: str, rule: str, value: str) -> dict:
    """An issue found when the rows are linked to the store (same shape as the gate's)."""
    return _issue(row, line, application_id, column, rule, value)


__all__ = ["OUTCOME_RULES", "OutcomeFile", "OutcomeSpec", "issue_row", "open_outcome_file",
           "read_outcomes"]
