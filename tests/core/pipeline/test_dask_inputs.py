"""Both engines take the same inputs and give the same results: CSV and Parquet (one huge row
group, as pandas writes it), paths or bytes, files on shared storage or sent by the driver."""

from __future__ import annotations

import gc
import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dask_helpers import assert_same_decisions, fresh_store, run, shared_home, stored

from finflow_core.errors import BatchRejected, ClusterError, ClusterLost, PermissionDenied
from finflow_core.lending.config import Config
from finflow_core.lending.intake.parquet import open_parquet_batch, row_group_sizes
from finflow_core.lending.intake.reader import open_batch
from finflow_core.lending.intake.sources import iter_chunks, open_source
from finflow_core.lending.synthetic import generate_applications
from finflow_core.pipeline.dask_engine import DaskEngine
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.partitions import (
    FileRef,
    csv_partitions,
    parquet_partitions,
    read_partition,
)

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_raw: dict[str, Any]) -> tuple[Config, Path]:
    return shared_home(small_raw)


@pytest.fixture(scope="module")
def client() -> Any:
    from finflow_core.pipeline.dask_cluster import local_cluster

    cluster, c = local_cluster(2)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = generate_applications(3000, seed=17).drop(columns="default")
    df.loc[2500, "application_id"] = df.loc[40, "application_id"]  # a duplicate across partitions
    df.loc[1200, "industry"] = "mining"
    return df


def test_errors_raised_on_a_worker_arrive_as_themselves() -> None:
    """Subclasses with keyword-only arguments survive pickling (Dask sends errors that way)."""
    errors = [BatchRejected("x.csv: not CSV", reason="not_csv", line=7),
              PermissionDenied("upload a batch", ("analyst",), "olga"),
              ClusterError("no workers", reason="no_workers", address="tcp://h:8786"),
              ClusterLost("gone", reason="no_workers_left")]
    for error in errors:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (back.message, back.details, back.exit_code) == (error.message, error.details, error.exit_code)
    assert [e.exit_code for e in errors[2:]] == [19, 20]


@pytest.mark.parametrize("variant", ["plain", "no final line break", "crlf", "empty lines"])
def test_expected_rows_is_the_record_count(config: Config, variant: str) -> None:
    """Progress said "1,000,000 / ~1,000,001 rows": the header line was counted as a record."""
    df = generate_applications(40, seed=2).drop(columns="default")
    text = df.to_csv(index=False, lineterminator="\r\n" if variant == "crlf" else "\n")
    if variant == "no final line break":
        text = text.rstrip("\n")
    if variant == "empty lines":
        text = text.replace("\n", "\n\n", 5) + "\n\r\n"
    batch = open_batch(text.encode(), config)
    read = sum(len(c.row_numbers) + len(c.misshapen) for c in iter_chunks(batch))
    assert batch.expected_rows == read == 40


def test_parquet_expected_rows_and_one_row_group_split(frame: pd.DataFrame, config: Config,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "default.parquet"
    frame.to_parquet(path, index=False)  # pandas' defaults: one row group
    assert row_group_sizes(path) == [3000]
    batch = open_parquet_batch(path, config)
    assert batch.expected_rows == 3000
    parts = parquet_partitions(path, rows_per_partition=700)
    assert [p.end - p.start for p in parts] == [700, 700, 700, 700, 200]
    ref = FileRef.of(batch, str(path))
    got = [read_partition(ref, p) for p in parts]
    ids = [x for chunks in got for raw in chunks for x in raw.frame["application_id"]]
    assert ids == frame["application_id"].tolist()


def test_csv_partitions_carry_the_hash_of_their_bytes(frame: pd.DataFrame, tmp_path: Path,
                                                      config: Config) -> None:
    path = tmp_path / "w.csv"
    frame.to_csv(path, index=False)
    data = path.read_bytes()
    parts = csv_partitions(path, partitions=4)
    assert len(parts) == 4
    assert [p.sha256 for p in parts] == [hashlib.sha256(data[p.start:p.end]).hexdigest() for p in parts]
    ref = FileRef.of(open_batch(path, config), str(path))
    tampered = bytearray(data[parts[2].start:parts[2].end])
    tampered[50:51] = b"9" if tampered[50:51] != b"9" else b"8"
    with pytest.raises(ClusterError, match="other bytes than this machine") as caught:
        list(read_partition(ref, parts[2], bytes(tampered)))
    assert caught.value.reason == "data_differs"
    assert sum(len(r.row_numbers) for r in read_partition(ref, parts[2])) > 0


def test_parquet_from_pandas_defaults_gives_the_same_batch_on_both_engines(
    home: tuple[Config, Path], frame: pd.DataFrame, client: Any, tmp_path: Path,
) -> None:
    """The single process reads Parquet too (the issue: it refused it); one row group or many,
    path or sent by the driver, the stored batch is the same."""
    config, db = home
    path = tmp_path / "week.parquet"
    frame.to_parquet(path, index=False)
    local = fresh_store(db, tmp_path, "local")
    s1 = run(local, path, config, LocalEngine(chunk_rows=800))
    a = stored(local, s1.batch_id)
    for name, engine in {"path": DaskEngine(client, parquet_rows=700),
                         "sent": DaskEngine(client, parquet_rows=1100, send_data=True)}.items():
        store = fresh_store(db, tmp_path, name)
        s2 = run(store, path, config, engine)
        assert s2.timings["partitions"] == (5 if name == "path" else 3)
        d1, d2 = s1.to_dict(), s2.to_dict()
        d1.pop("timings"), d2.pop("timings")
        assert d1 == d2
        b = stored(store, s2.batch_id)
        assert_same_decisions(a["apps"], b["apps"])  # cells too: the same format on both sides
        assert a["quarantine"] == b["quarantine"] and a["issues"] == b["issues"]
        assert tuple(a["drift"]) == tuple(b["drift"])
        store.close()
    # and the same applications as the CSV of the same frame
    csv_path = tmp_path / "week.csv"
    frame.to_csv(csv_path, index=False)
    s3 = run(fresh_store(db, tmp_path, "csv"), csv_path, config)
    assert (s3.rows_valid, s3.bands) == (s1.rows_valid, s1.bands)


def test_a_batch_given_as_bytes_is_sent_to_the_workers(
    home: tuple[Config, Path], frame: pd.DataFrame, client: Any, tmp_path: Path,
) -> None:
    config, db = home
    data = frame.to_csv(index=False).encode()
    one = fresh_store(db, tmp_path, "one")
    many = fresh_store(db, tmp_path, "many")
    s1 = run(one, data, config)
    s2 = run(many, data, config, DaskEngine(client, partitions=3))
    assert s2.timings["partitions"] == 3
    assert_same_decisions(stored(one, s1.batch_id)["apps"], stored(many, s2.batch_id)["apps"])


def test_a_refusal_found_on_a_worker_names_the_files_line(
    home: tuple[Config, Path], frame: pd.DataFrame, client: Any, tmp_path: Path,
) -> None:
    """An unclosed quote in a late partition: the same message (with the file's line number)
    from both engines, exit 4, nothing stored."""
    config, db = home
    text = frame.to_csv(index=False)
    lines = text.split("\n")
    lines[2900] = lines[2900].replace(",", ',"unclosed', 1)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines))
    messages = []
    for engine in (LocalEngine(), DaskEngine(client, partitions=4)):
        store = fresh_store(db, tmp_path, engine.name)
        with pytest.raises(BatchRejected) as caught:
            run(store, path, config, engine)
        assert caught.value.exit_code == 4
        messages.append(caught.value.message)
        with store.connect() as conn:
            from sqlalchemy import select

            from finflow_core.store.lending_tables import batches
            assert conn.execute(select(batches.c.id)).all() == []
        store.close()
    assert messages[0] == messages[1] and "line 2901" in messages[0]


def test_open_source_gives_an_absolute_parquet_path(frame: pd.DataFrame, config: Config,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame.head(10).to_parquet(tmp_path / "p.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    batch = open_source(Path("p.parquet"), config)
    assert Path(str(batch.source)).is_absolute() and batch.kind == "parquet"
    assert np.isclose(batch.expected_rows, 10)


def test_a_partition_of_one_huge_row_group_is_read_in_bounded_memory(config: Config,
                                                                   tmp_path: Path) -> None:
    """The issue: pandas' one row group gave one partition and 5.9 GiB on the driver. A
    partition near the end of a 400,000-record, one-group file is read (by a worker, or by
    the driver to send it) with a fraction of the memory the whole group takes decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from finflow_core.pipeline.partitions import partition_bytes

    one = generate_applications(20_000, seed=5).drop(columns="default")
    df = pd.concat([one] * 20, ignore_index=True)
    df["application_id"] = [f"APP-{i:08d}" for i in range(len(df))]
    path = tmp_path / "one_group.parquet"
    df.to_parquet(path, index=False)  # pandas' defaults
    assert row_group_sizes(path) == [400_000]
    whole = pq.read_table(path).nbytes
    part = next(p for p in parquet_partitions(path, rows_per_partition=10_000) if p.start == 300_000)
    ref = FileRef.of(open_parquet_batch(path, config), str(path))

    pools: list[Any] = []  # a proxy pool must outlive every buffer it allocated

    def peak(read: Any) -> tuple[Any, int]:
        before = pa.default_memory_pool()
        pool = pa.proxy_memory_pool(before)  # its own statistics
        pools.append(pool)
        pa.set_memory_pool(pool)
        try:
            return read(), pool.max_memory()
        finally:
            pa.set_memory_pool(before)

    def on_a_worker() -> tuple[list[str], list[int]]:
        chunks = list(read_partition(ref, part))
        return ([x for raw in chunks for x in raw.frame["application_id"]],
                [r + part.start for r in chunks[0].row_numbers[:2]])

    def to_send() -> int:
        sent = partition_bytes(str(path), part, ref.header)
        return pa.ipc.open_stream(pa.BufferReader(sent)).read_all().num_rows

    (ids, first_rows), on_worker = peak(on_a_worker)
    sent_rows, on_driver = peak(to_send)
    assert ids == df["application_id"].iloc[300_000:310_000].tolist()
    assert first_rows == [300_001, 300_002]
    assert sent_rows == 10_000
    # reading the row group whole (pyarrow's read_row_group) takes more than ``whole``
    assert on_worker < whole / 4, (on_worker, whole)
    assert on_driver < whole / 4, (on_driver, whole)
    gc.collect()
