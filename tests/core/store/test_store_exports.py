"""The fast report export writes the same bytes as the pandas one it replaced: the CSV rows
(spreadsheet guard, quoting, number text), the reasons read from their JSON, a whole export;
and the read-ahead behind it keeps order, errors and stopping."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text
from store_helpers import ANALYST, Lending, raw_sql

from finflow_core.lending.terms import BAND_RECOMMENDATION
from finflow_core.store import batch_queries, csv_text, exports
from finflow_core.store.read_ahead import read_ahead

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

HOSTILE = ["", "plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "\r\n", "=1+1", "+44 20",
           "-5", "@SUM(A1)", "\tindented", "\rstart", "'quoted already", "Région Île-de-France",
           "emoji \U0001f600", '=HYPERLINK("x","y")', ",", '"', "  spaced  ", "x\x00y"]


def _pandas_csv(df: pd.DataFrame, *, header: bool = True) -> bytes:
    """What exports wrote before: safe_frame, then pandas' csv.writer."""
    return exports.safe_frame(df).to_csv(index=False, header=header,
                                         lineterminator="\r\n").encode("utf-8")


def _floats(rng: np.random.Generator, n: int) -> np.ndarray:
    edge = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e16, 9999999999999998.0, 1e-4, 9.999e-5, 5e-324,
            1.7976931348623157e308, 0.1, 1 / 3, 2.5, -1e-5, 1e21, 123.0, 2.0**30, 2.0**30 - 0.5,
            1073741823.999999, 0.000001, 0.0001005, 272100.0, -38837.92, 0.018644]
    bits = rng.integers(0, 2**64, size=n, dtype=np.uint64).view(np.float64)
    return np.concatenate([edge, bits, rng.random(n).round(6), (rng.random(n) * 1e7).round(2),
                           -(rng.random(n) * 1e9).round(1), rng.integers(-10**6, 10**6, n) / 4.0,
                           (rng.random(n) * 1e-3).round(6), rng.random(n) * 2.0**31])


def test_float_text_is_numpys_str() -> None:
    values = _floats(np.random.default_rng(7), 50_000)
    expected = values.astype(str)
    expected[np.isnan(values)] = ""
    assert csv_text._float_text(values).to_pylist() == expected.tolist()


def test_csv_rows_are_pandas_bytes_for_hostile_frames() -> None:
    rng = np.random.default_rng(11)
    n = 3 * len(HOSTILE)
    cells = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    with_missing = [None if i % 5 == 0 else c for i, c in enumerate(cells)]
    df = pd.DataFrame({
        "row=number": np.arange(n, dtype=np.int64) - 3,  # a header a spreadsheet would run
        "text,col": pd.array(with_missing, dtype="str"),
        "objects": pd.Series(with_missing, dtype=object),
        "floats": _floats(rng, 10)[:n],
        "python_str": pd.array(cells[::-1], dtype=pd.StringDtype("python")),
        "na_str": pd.array(with_missing[::-1], dtype=pd.StringDtype("pyarrow", na_value=pd.NA)),
        "uint": np.arange(n, dtype=np.uint32),
        "all_missing": pd.Series([None] * n, dtype=object),
    })
    assert csv_text.csv_rows(df) is not None  # all rendered here, none by pandas
    assert exports.csv_bytes(df) == _pandas_csv(df)
    # columns left to pandas give the same bytes too: mixed objects, booleans, nullable ints
    odd = df.assign(mixed=pd.Series([-5, "=x", 2.5, None] * (n // 4) + [None] * (n % 4), dtype=object),
                    flag=[i % 2 == 0 for i in range(n)],
                    nullable=pd.array([None if i % 3 else i for i in range(n)], dtype="Int64"))
    assert csv_text.csv_rows(odd) is None
    assert exports.csv_bytes(odd) == _pandas_csv(odd)
    # a lone column (csv writes "" for an empty cell there) and a frame without rows
    assert exports.csv_bytes(df[["text,col"]]) == _pandas_csv(df[["text,col"]])
    assert exports.csv_bytes(df.iloc[:0]) == _pandas_csv(df.iloc[:0])


def test_write_csv_in_chunks_is_one_pandas_file(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": pd.array(HOSTILE, dtype="str"), "b": np.linspace(-1, 1, len(HOSTILE))})
    chunks = [df.iloc[i:i + 4] for i in range(0, len(df), 4)]
    exports.write_csv(iter(chunks), tmp_path / "x.csv")
    expected = b"".join(_pandas_csv(c, header=i == 0) for i, c in enumerate(chunks))
    assert (tmp_path / "x.csv").read_bytes() == expected == _pandas_csv(df)


def _reasons(*texts: str, value: Any = 1.0) -> str:
    return json.dumps([{"feature": "f", "text": t, "value": value, "contribution": 0.1} for t in texts])


def _old_decision_table(rows: list[tuple[Any, ...]], k: int) -> pd.DataFrame:
    """The decision table as it was built before (json.loads, Python lists)."""
    cols = [list(c) for c in zip(*rows, strict=True)]
    texts = [[""] * len(rows) for _ in range(k)]
    for i, r in enumerate(cols[8]):
        for j, reason in enumerate(json.loads(r)[:k]):
            texts[j][i] = reason["text"]
    recommend = {str(b): str(r) for b, r in BAND_RECOMMENDATION.items()}
    return pd.DataFrame({
        "row_number": np.asarray(cols[0], dtype=np.int64), "application_id": cols[1],
        "probability": np.asarray(cols[2], dtype=float).round(6), "band": cols[3],
        "decision": [recommend.get(b) for b in cols[3]], "status": cols[4],
        "expected_profit": np.asarray(cols[5], dtype=float).round(2),
        "loan_amount": np.asarray(cols[6], dtype=float), "model_version": cols[7],
        **{f"reason_{j + 1}": texts[j] for j in range(k)},
    })


REASONS = ["[]", _reasons("one"), _reasons("a", "b", "c", "d", "e", "f"), _reasons("=cmd", "x,y"),
           _reasons('quote " and \\ back', "line\nbreak", value=float("nan")),
           _reasons("Région €", "\U0001f600", value="text value"), " [ ]",
           '[{"text": "dup", "text": "last"}]', '[{"text": "nested", "sub": {"text": "no"}}]']


def test_decision_table_reads_reasons_as_json_loads_did() -> None:
    rows = [(i + 1, f"APP-{i}" if i % 4 else "=evil", 0.1234567 * i, ("low", "medium", "high", "odd")[i % 4],
             "pending", None if i % 3 == 0 else 1234.567 * i, 1000.0 + i, "v1", REASONS[i % len(REASONS)])
            for i in range(40)]
    approvals = [(*r[:8], "[]") for r in rows]  # a chunk without any reasons
    for chunk in (rows, approvals):
        for k in (0, 1, 4, 7):
            new = batch_queries._decision_table(chunk, k)
            assert exports.csv_bytes(new) == _pandas_csv(_old_decision_table(chunk, k))
    # reasons json.loads reads otherwise (or not at all) go its way, errors included
    for bad, error in (('[{"feature": "f"}]', KeyError), ("[1]", TypeError), ("null", TypeError),
                       ("[{", json.JSONDecodeError)):
        with pytest.raises(error):
            batch_queries._decision_table([(1, "A", 0.5, "low", "approved", 1.0, 2.0, "v", bad)], 4)
    lone = [(1, "A", 0.5, "low", "approved", 1.0, 2.0, "v", _reasons("\ud800 lone"))]  # not UTF-8
    for build in (batch_queries._decision_table, _old_decision_table):
        with pytest.raises(UnicodeEncodeError):
            exports.csv_bytes(build(lone, 4))


def test_an_export_with_hostile_cells_missing_values_and_many_reasons_is_unchanged(
    ffa: Lending, tmp_path: Path
) -> None:
    batch_id = ffa.batch_ids()[0]
    with ffa.store.connect() as conn:
        ids = conn.execute(text("SELECT id FROM applications WHERE batch_id = :b ORDER BY row_number"),
                           {"b": batch_id}).scalars().all()
    statements = []
    for n, app in enumerate(ids[:60]):
        cell = HOSTILE[n % len(HOSTILE)].replace("\x00", "").replace("'", "''")
        statements.append(f"UPDATE applications SET external_id = '{cell}{n}'"
                          f"{', expected_profit = NULL' if n % 3 == 0 else ''} WHERE id = {app}")
        reasons = REASONS[n % len(REASONS)].replace("'", "''")
        statements.append(f"UPDATE scores SET reasons = '{reasons}' WHERE application_id = {app}")
    raw_sql(ffa.store, *statements)
    ffa.wb(ANALYST).batches.export(batch_id, tmp_path / "out")

    k = ffa.context.config.model.reason_codes
    a = "a.row_number, a.external_id, a.probability, a.band, a.status, a.expected_profit, a.amount"
    with ffa.store.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text(
            f"SELECT {a}, s.model_version, s.reasons FROM applications a JOIN scores s "
            "ON s.application_id = a.id WHERE a.batch_id = :b ORDER BY a.row_number"), {"b": batch_id})]
    out = tmp_path / "out"
    assert (out / "decisions.csv").read_bytes() == _pandas_csv(_old_decision_table(rows, k))
    quarantine = batch_queries.quarantine_frame(ffa.store, batch_id)
    assert len(quarantine) and (out / "quarantine.csv").read_bytes() == _pandas_csv(quarantine)
    issues = batch_queries.issues_frame(ffa.store, batch_id)
    assert (out / "quarantine_issues.csv").read_bytes() == _pandas_csv(issues)
    assert b",'=1+17," in (out / "decisions.csv").read_bytes()  # defused, as before


def test_read_ahead_keeps_order_raises_the_workers_error_and_stops_with_its_caller() -> None:
    assert list(read_ahead(iter(range(50)))) == list(range(50))
    assert list(read_ahead(iter([]))) == []

    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("the store went away")

    got = read_ahead(failing())
    assert next(got) == 1
    with pytest.raises(ValueError, match="went away"):
        next(got)

    made: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            for i in itertools.count():
                made.append(i)
                yield i
        finally:
            closed.set()

    reader = read_ahead(endless())
    assert [next(reader), next(reader)] == [0, 1]
    reader.close()  # the caller stops: the worker ends, its generator is closed
    assert closed.wait(5) and len(made) <= 5
    assert not [t for t in threading.enumerate() if t.name == "finflow-read-ahead"]
