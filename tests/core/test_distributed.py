"""The weekly run on Dask gives the same stored results as the single-process run.

One small model is trained and registered once; the same batch (bad rows, duplicate ids
within and across partitions, a misshapen row, blank lines, quoted cells with line breaks)
runs through the local engine into one store and the Dask engine on a 2-worker LocalCluster
into another, and everything stored is compared.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from finflow_core.errors import PermissionDenied
from finflow_core.lending.config import Config, parse_config
from finflow_core.lending.synthetic import generate_applications
from finflow_core.pipeline.dask_engine import DaskEngine
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.partitions import csv_partitions, parquet_partitions
from finflow_core.pipeline.run import BatchSummary
from finflow_core.services.access import SYSTEM, Principal
from finflow_core.services.context import Context
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.lending_tables import (
    applications,
    batches,
    drift_runs,
    quarantine_issues,
    quarantine_rows,
    scores,
)

distributed = pytest.importorskip("distributed")

ROWS = 2400


@pytest.fixture(scope="module")
def dist_config(tmp_path_factory: pytest.TempPathFactory, small_raw: dict[str, Any]) -> Config:
    root = tmp_path_factory.mktemp("dask_home")
    raw = copy.deepcopy(small_raw)
    raw["model"]["random_forest"] = {**raw["model"]["random_forest"], "n_estimators": 30}
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "n_estimators": 60}
    raw["model"]["cv_folds"] = 3
    raw["paths"] = {"models_dir": str(root / "models"), "data_dir": str(root / "data"),
                    "database_url": f"sqlite:///{root / 'base.db'}"}
    return parse_config(raw, source="dask-test-config")


@pytest.fixture(scope="module")
def base_db(dist_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a small registered champion and no batches (copied for each run)."""
    history = tmp_path_factory.mktemp("dask_history") / "history.csv"
    generate_applications(3000, seed=11).to_csv(history, index=False)
    store = open_store(dist_config.paths.database_url)
    Workbench(Context(dist_config, store), SYSTEM).models.train(history)
    store.close()
    return Path(dist_config.paths.database_url.removeprefix("sqlite:///"))


def run(store: Store, path: Path, config: Config, engine: Any = None, *, who: Principal = SYSTEM,
        **kw: Any) -> BatchSummary:
    return Workbench(Context(config, store), who).batches.run(path, engine=engine, **kw)


def fresh_store(base_db: Path, folder: Path, name: str) -> Store:
    target = folder / f"{name}.db"
    shutil.copy(base_db, target)
    return open_store(f"sqlite:///{target}")


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def messy_batch(rows: int = ROWS, seed: int = 5) -> bytes:
    """A batch with bad rows, duplicate ids, a misshapen row, blank lines and quoted newlines."""
    df = generate_applications(rows, seed=seed).drop(columns="default").astype(object)
    df["note"] = ""  # an ignored column holding quoted text with commas and line breaks
    ids = df["application_id"].tolist()
    df.loc[3, "credit_score"] = ""  # not_null
    df.loc[10, "industry"] = "mining"  # category
    df.loc[20, "loan_amount"] = "-5"  # in range
    df.loc[30, "region"] = "=cmd()"  # formula + category
    df.loc[40, "interest_rate"] = "abc"  # number
    df.loc[7, "note"] = 'line one\nline "two", still\nthe same cell'
    for i in range(100, rows, 97):
        df.loc[i, "note"] = f"multi\nline {i}"
    # duplicate ids: within the first partition, across partitions, of an invalid first row
    df.loc[50, "application_id"] = ids[5]
    df.loc[rows - 10, "application_id"] = ids[5]
    df.loc[rows // 2, "application_id"] = ids[3]  # first occurrence (row 4) is itself invalid
    df.loc[rows // 2 + 1, "application_id"] = ids[rows - 1]  # later row's id appears earlier
    df.loc[rows - 5, "application_id"] = ids[rows // 3]
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    lines = buf.getvalue().split("\n")
    # a misshapen row and blank lines (not records); the misshapen row's id is reused later
    misshapen_id = "APP-MISSHAPEN-1"
    lines.insert(600, f"{misshapen_id},2026-01-05,1,2")
    lines.insert(900, "")
    lines.insert(1500, "")
    text = "\n".join(lines)
    text = text.replace(ids[rows - 20] + ",", misshapen_id + ",", 1)
    return text.encode()


def stored(store: Store, batch_id: str) -> dict[str, Any]:
    with store.connect() as conn:
        apps = conn.execute(
            select(applications.c.row_number, applications.c.external_id, applications.c.probability,
                   applications.c.band, applications.c.status, applications.c.expected_profit,
                   applications.c.week_start, applications.c.segment_1, applications.c.segment_2,
                   applications.c.data, applications.c.decided_kind, scores.c.reasons,
                   scores.c.ev_approve, scores.c.ev_review)
            .join(scores, scores.c.application_id == applications.c.id)
            .where(applications.c.batch_id == batch_id).order_by(applications.c.row_number)
        ).mappings().all()
        qrows = conn.execute(
            select(quarantine_rows.c.row_number, quarantine_rows.c.line, quarantine_rows.c.external_id,
                   quarantine_rows.c.reasons, quarantine_rows.c.data)
            .where(quarantine_rows.c.batch_id == batch_id).order_by(quarantine_rows.c.row_number)
        ).all()
        issues = conn.execute(
            select(quarantine_issues.c.row_number, quarantine_issues.c.column_name,
                   quarantine_issues.c.rule, quarantine_issues.c.value, quarantine_issues.c.message)
            .where(quarantine_issues.c.batch_id == batch_id)
            .order_by(quarantine_issues.c.row_number, quarantine_issues.c.id)
        ).all()
        drift = conn.execute(select(drift_runs.c.status, drift_runs.c.score_psi, drift_runs.c.psi,
                                    drift_runs.c.counts).where(drift_runs.c.batch_id == batch_id)).one()
        batch = conn.execute(select(batches).where(batches.c.id == batch_id)).one()._asdict()
    return {"apps": [dict(a) for a in apps], "quarantine": [(*q[:4], _cells(q[4])) for q in qrows],
            "issues": [tuple(i) for i in issues], "drift": drift, "batch": batch}


def _cells(data: str) -> dict[str, Any]:
    """A quarantined row's stored cells. The core adds ``"(extra cells)": null`` to every
    quarantined row of a chunk that also holds a misshapen row, so that key depends on the
    chunking (of either run): ignore it where it is null."""
    cells = json.loads(data)
    if cells.get("(extra cells)", "") is None:
        del cells["(extra cells)"]
    return cells


def assert_same_decisions(a: list[dict[str, Any]], b: list[dict[str, Any]], *, data: bool = True) -> None:
    assert len(a) == len(b) > 0
    assert [x["row_number"] for x in a] == [x["row_number"] for x in b]
    assert [x["external_id"] for x in a] == [x["external_id"] for x in b]
    np.testing.assert_allclose([x["probability"] for x in a], [x["probability"] for x in b], rtol=0, atol=1e-9)
    np.testing.assert_allclose([x["expected_profit"] for x in a], [x["expected_profit"] for x in b],
                               rtol=0, atol=1e-6)
    for key in ("band", "status", "decided_kind", "week_start", "segment_1", "segment_2",
                *(("data",) if data else ())):
        assert [x[key] for x in a] == [x[key] for x in b], key
    for x, y in zip(a, b, strict=True):
        ra, rb = json.loads(x["reasons"]), json.loads(y["reasons"])
        assert [(r["feature"], r["text"], r["value"]) for r in ra] == \
               [(r["feature"], r["text"], r["value"]) for r in rb]
        np.testing.assert_allclose([r["contribution"] for r in ra], [r["contribution"] for r in rb],
                                   rtol=0, atol=1e-9)


def test_partitions_cut_at_record_boundaries(tmp_path: Path) -> None:
    data = messy_batch(600)
    path = tmp_path / "b.csv"
    path.write_bytes(data)
    parts = csv_partitions(path, partitions=7)
    assert len(parts) >= 5
    assert parts[0].start == 0 and parts[-1].end == len(data)
    assert all(p.end == q.start for p, q in zip(parts, parts[1:], strict=False))
    # every cut is where a record ends when the whole file is parsed
    whole = list(csv.reader(io.StringIO(data.decode(), newline="")))
    pieces = [list(csv.reader(io.StringIO(data[p.start:p.end].decode(), newline=""))) for p in parts]
    assert [r for piece in pieces for r in piece] == whole
    assert all(p.lines_before == data[:p.start].count(b"\n") for p in parts)
    # and a file without quotes is cut on the fast path the same way
    plain = generate_applications(500, seed=3).to_csv(index=False).encode()
    (tmp_path / "p.csv").write_bytes(plain)
    fast = csv_partitions(tmp_path / "p.csv", blocksize=5000)
    assert len(fast) > 5 and all(plain[p.start - 1:p.start] == b"\n" for p in fast[1:])
    assert all(p.lines_before == plain[:p.start].count(b"\n") for p in fast)


def test_dask_run_matches_single_process(
    dist_config: Config, base_db: Path, client: Any, tmp_path: Path,
) -> None:
    path = tmp_path / "week.csv"
    path.write_bytes(messy_batch())
    one = fresh_store(base_db, tmp_path, "single")
    many = fresh_store(base_db, tmp_path, "dask")
    s1 = run(one, path, dist_config, LocalEngine(chunk_rows=700), out_dir=tmp_path / "out1")
    seen: list[tuple[int, int]] = []
    s2 = run(many, path, dist_config, DaskEngine(client, partitions=6), out_dir=tmp_path / "out2",
             progress=lambda d, t: seen.append((d, t)))
    assert s2.timings["partitions"] >= 5
    d1, d2 = s1.to_dict(), s2.to_dict()
    d1.pop("timings"), d2.pop("timings")
    assert d1 == d2  # rows, bands, profit, drift, issues by rule, warnings
    assert s1.rows_quarantined >= 9 and s1.issues_by_rule["duplicate_id"] >= 4
    assert "field_count" in s1.issues_by_rule
    a, b = stored(one, s1.batch_id), stored(many, s2.batch_id)
    assert_same_decisions(a["apps"], b["apps"])
    assert a["quarantine"] == b["quarantine"]
    assert a["issues"] == b["issues"]
    assert tuple(a["drift"]) == tuple(b["drift"])  # status, score PSI, every feature's PSI, counts
    for key in ("rows_in", "rows_valid", "rows_quarantined", "n_low", "n_medium", "n_high",
                "automation_rate", "expected_profit", "drift_status", "week_start", "summary"):
        assert a["batch"][key] == b["batch"][key], key
    for name in ("decisions.csv", "quarantine.csv", "quarantine_issues.csv", "summary.json"):
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes()
    assert seen and seen[-1][0] == s1.rows_in
    # the same file again: the stored batch, nothing added
    again = run(many, path, dist_config, DaskEngine(client, partitions=3))
    assert again.already_stored and again.batch_id == s1.batch_id
    with many.connect() as conn:
        assert conn.execute(select(batches.c.id)).all().__len__() == 1


def test_dask_run_reads_parquet_row_groups(
    dist_config: Config, base_db: Path, client: Any, tmp_path: Path,
) -> None:
    df = generate_applications(1500, seed=9).drop(columns="default")
    df.loc[700, "application_id"] = df.loc[10, "application_id"]  # duplicate across row groups
    df.loc[20, "industry"] = "mining"
    csv_path, pq_path = tmp_path / "week.csv", tmp_path / "week.parquet"
    df.to_csv(csv_path, index=False)
    df.to_parquet(pq_path, row_group_size=400, index=False)
    assert len(parquet_partitions(pq_path, rows_per_partition=400)) == 4
    one, many = fresh_store(base_db, tmp_path, "single"), fresh_store(base_db, tmp_path, "dask")
    s1 = run(one, csv_path, dist_config)
    s2 = run(many, pq_path, dist_config, DaskEngine(client, parquet_rows=400))
    assert (s2.rows_in, s2.rows_valid, s2.bands) == (s1.rows_in, s1.rows_valid, s1.bands)
    assert s2.drift == s1.drift
    a, b = stored(one, s1.batch_id), stored(many, s2.batch_id)
    # cells are the Parquet values as text (100000.0 may read 100000), so compare decisions only
    assert_same_decisions(a["apps"], b["apps"], data=False)
    assert [q[:4] for q in a["quarantine"]] == [q[:4] for q in b["quarantine"]]
    assert json.loads(a["drift"].counts) == json.loads(b["drift"].counts)


def test_dask_run_needs_upload_role(dist_config: Config, base_db: Path, tmp_path: Path) -> None:
    viewer = Principal(user_id=None, username="v", roles=frozenset({"officer"}))
    path = tmp_path / "w.csv"
    path.write_bytes(pd.DataFrame({"a": [1]}).to_csv().encode())
    with pytest.raises(PermissionDenied):
        run(fresh_store(base_db, tmp_path, "x"), path, dist_config, DaskEngine(), who=viewer)


@pytest.mark.heavy
def test_cli_weekly_run_on_dask_gives_the_documented_summary(
    dist_config: Config, base_db: Path, small_raw: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`finflow weekly-run --engine dask` (a LocalCluster of its own) stores the batch once."""
    import yaml

    from finflow_core.cli import main

    db = tmp_path / "cli.db"
    shutil.copy(base_db, db)
    raw = copy.deepcopy(small_raw)
    raw["model"]["cv_folds"] = 3
    raw["paths"] = {"models_dir": str(dist_config.paths.models_dir),
                    "data_dir": str(dist_config.paths.data_dir), "database_url": f"sqlite:///{db}"}
    config_path = tmp_path / "finflow.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    store = open_store(f"sqlite:///{db}")
    from finflow_core.services.sessions import Gate

    admin = Gate(Context(dist_config, store)).create_first_admin("root", "admin pass phrase 123")
    admin.users.add("ana", "analyst pass phrase 1", ["analyst"])
    store.close()
    batch = tmp_path / "week.csv"
    generate_applications(900, seed=31).drop(columns="default").to_csv(batch, index=False)
    monkeypatch.setenv("FINFLOW_CONFIG", str(config_path))
    monkeypatch.setenv("FINFLOW_USER", "ana")
    monkeypatch.setenv("FINFLOW_PASSWORD", "analyst pass phrase 1")

    assert main(["weekly-run", "--data", str(batch), "--engine", "dask", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary)[:9] == ["batch_id", "model_version", "rows_in", "rows_valid",
                                 "rows_quarantined", "bands", "automation_rate", "expected_profit",
                                 "drift"]
    assert summary["rows_in"] == 900 and summary["rows_valid"] + summary["rows_quarantined"] == 900
    assert main(["weekly-run", "--data", str(batch), "--json"]) == 0  # same file, local engine
    again = json.loads(capsys.readouterr().out)
    assert again["batch_id"] == summary["batch_id"] and again["already_stored"] is True
    store = open_store(f"sqlite:///{db}")
    with store.connect() as conn:
        assert conn.execute(select(applications.c.id)).all().__len__() == summary["rows_valid"]
