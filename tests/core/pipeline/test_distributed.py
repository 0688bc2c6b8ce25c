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

import pandas as pd
import pytest
from dask_helpers import assert_same_decisions, fresh_store, messy_batch, run, shared_home, stored
from sqlalchemy import select

from finflow_core.errors import PermissionDenied
from finflow_core.lending.config import Config
from finflow_core.lending.synthetic import generate_applications
from finflow_core.pipeline.dask_engine import DaskEngine
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.partitions import csv_partitions, parquet_partitions
from finflow_core.services.access import Principal
from finflow_core.services.context import Context
from finflow_core.store import open_store
from finflow_core.store.lending_tables import applications, batches

distributed = pytest.importorskip("distributed")

@pytest.fixture(scope="module")
def dist_home(tmp_path_factory: pytest.TempPathFactory, small_raw: dict[str, Any]) -> tuple[Config, Path]:
    return shared_home(small_raw)


@pytest.fixture(scope="module")
def dist_config(dist_home: tuple[Config, Path]) -> Config:
    return dist_home[0]


@pytest.fixture(scope="module")
def base_db(dist_home: tuple[Config, Path]) -> Path:
    """A store with a small registered champion and no batches (copied for each run)."""
    return dist_home[1]


@pytest.fixture(scope="module")
def client() -> Any:
    from finflow_core.pipeline.dask_cluster import local_cluster

    cluster, c = local_cluster(2)
    yield c
    c.close()
    cluster.close()


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
