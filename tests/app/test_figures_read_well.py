"""Figures a person reads: on every page a role can open, no ``None``, ``nan``, ``NaT``, raw
JSON, ISO ``T`` or microsecond time stamps, and no unformatted fractions (``0.1928``) in the
text, the metrics or the table cells.

Tables are checked as Streamlit draws them: a missing cell is drawn as ``None``, and a float
column is drawn as the raw number unless its column is configured with a format.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from app_support import no_exception, page_as, texts

from finflow_app.pages import PAGES
from finflow_core.services.access import can

#: Words and shapes that must never reach a reader.
RAW = re.compile(
    r"\bNone\b|\bnan\b|\bNaN\b|\bNaT\b|\d{4}-\d\d-\d\dT\d\d:\d\d|\d\d:\d\d:\d\d\.\d{3,}|[{\[]\s*\"\w+\"\s*:"
)
#: Numbers as a program prints them: many decimals, or no thousands separators in a large
#: amount with decimals (``670586757.07``), or thousands with three decimals (``145,719,012.688``).
RAW_NUMBER = re.compile(r"(?<![\w.,-])(?:\d+\.\d{5,}|\d{5,}\.\d+|\d{1,3}(?:,\d{3})+\.\d{3,})(?![\d%])")


#: Columns that show an entry exactly as recorded (the audit page's canonical JSON beside the
#: worded details): raw by design, so an auditor can compare them with the export.
AS_STORED = {"record as stored"}


def configured_formats(frame_proto) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Column name -> the display format set with ``st.column_config`` (if any)."""
    raw = getattr(frame_proto, "columns", "") or "{}"
    out = {}
    for name, spec in json.loads(raw).items():
        opts = spec.get("type_config") or {}
        fmt = opts.get("format")
        out[spec.get("label") or name] = fmt or ""
        out[name] = fmt or ""
    return out


def table_problems(at) -> list[str]:  # type: ignore[no-untyped-def]
    problems = []
    for d in at.dataframe:
        frame: pd.DataFrame = d.value
        formats = configured_formats(d.proto)
        for col in frame.columns:
            series = frame[col]
            if series.isna().any():
                problems.append(f"column {col!r} has a missing cell (drawn as None)")
            if pd.api.types.is_float_dtype(series):
                values = series.dropna()
                if not formats.get(str(col)) and not (values == values.round()).all():
                    problems.append(f"float column {col!r} has no display format: {values.iloc[0]!r}")
            elif col in AS_STORED:
                continue
            elif series.dtype == object or pd.api.types.is_string_dtype(series):
                for v in series.dropna().astype(str):
                    if RAW.search(v) or RAW_NUMBER.search(v):
                        problems.append(f"column {col!r} shows {v[:80]!r}")
                        break
    return problems


def screen_problems(at) -> list[str]:  # type: ignore[no-untyped-def]
    shown = texts(at)
    shown += "\n" + "\n".join(str(m.delta or "") for m in at.metric)
    shown += "\n" + "\n".join(str(o) for s in at.selectbox for o in s.options)
    return [m.group(0) for m in RAW.finditer(shown)] + [m.group(0) for m in RAW_NUMBER.finditer(shown)]


@pytest.mark.parametrize("role", ["admin", "analyst", "officer", "manager"])
def test_every_page_reads_as_figures_and_words(inst, role: str) -> None:
    user = inst.users[role]
    found: dict[str, list[str]] = {}
    for spec in PAGES:
        if spec.action is not None and not can(user, spec.action):
            continue
        if spec.url_path in ("review_queue", "users"):  # the desk engineer's pages
            continue
        at = page_as(user, spec.path)
        no_exception(at)
        problems = screen_problems(at) + table_problems(at)
        if problems:
            found[spec.url_path] = problems
    assert found == {}


def test_a_typed_in_decision_and_an_uploaded_batch_read_as_figures(inst) -> None:
    from test_oversight import fill_application
    from test_upload import batch_bytes

    at = page_as(inst.users["officer"], "pages/new_application.py")
    at = fill_application(at, "FIG-0001", credit_score=520, recent_delinquencies=3, debt_to_income=1.9,
                          interest_rate=19.28)
    no_exception(at)
    assert at.session_state["na_result"].valid
    assert screen_problems(at) + table_problems(at) == []

    at = page_as(inst.users["analyst"], "pages/upload.py")
    at.file_uploader(key="up_file").set_value(("figures.csv", batch_bytes(300, 77, broken=4), "text/csv")).run()
    no_exception(at)
    assert screen_problems(at) + table_problems(at) == []  # the quality gate
    at.button(key="up_score").click().run()
    no_exception(at)
    assert screen_problems(at) + table_problems(at) == []  # the stored batch's summary
