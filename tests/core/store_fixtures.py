"""Fixtures of the store tests. Each module loads them as a plugin, so session fixtures
exist once whatever the number of modules::

    pytest_plugins = ["store_fixtures"]

and imports the helpers it uses from ``store_helpers``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from store_helpers import (
    BatchFiles,
    Lending,
    TrainedModel,
    cloned_lending,
    once,
    small_config_raw,
    sqlite_url,
    train_session_model,
    write_batches,
)


@pytest.fixture(scope="session")
def store_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return once("dir", lambda: tmp_path_factory.mktemp("store_session"))


@pytest.fixture(scope="session")
def config_path(store_session_dir: Path) -> Path:
    def make() -> Path:
        path = store_session_dir / "config.yaml"
        path.write_text(yaml.safe_dump(small_config_raw()))
        return path
    return once("config", make)


@pytest.fixture(scope="session")
def trained_model(store_session_dir: Path, config_path: Path) -> TrainedModel:
    """The session's one model, trained through train_and_register (~3 s)."""
    return once("model", lambda: train_session_model(store_session_dir, config_path))


@pytest.fixture(scope="session")
def batches_dir(store_session_dir: Path) -> BatchFiles:
    return once("batches", lambda: write_batches(store_session_dir))


def _installation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config_path: Path, url: str,
                  trained_model: TrainedModel, batches_dir: BatchFiles,
                  kind: str = "fresh") -> Iterator[Lending]:
    """The body of every installation fixture: a copy of the ``kind`` template at ``url``,
    closed after the test."""
    lending = cloned_lending(monkeypatch, tmp_path / "home", config_path, url, trained_model,
                             batches_dir, kind)
    try:
        yield lending
    finally:
        lending.close()


@pytest.fixture
def ff(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_path: Path,
       trained_model: TrainedModel, batches_dir: BatchFiles) -> Iterator[Lending]:
    """A fresh installation on each backend (SQLite and PostgreSQL)."""
    yield from _installation(monkeypatch, tmp_path, config_path, store_url, trained_model,
                             batches_dir)


@pytest.fixture
def ff_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_path: Path,
              trained_model: TrainedModel, batches_dir: BatchFiles) -> Iterator[Lending]:
    """A fresh installation on SQLite only (for tests about files, processes, the CLI)."""
    yield from _installation(monkeypatch, tmp_path, config_path, sqlite_url(tmp_path),
                             trained_model, batches_dir)


@pytest.fixture
def ffa(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_path: Path,
        trained_model: TrainedModel, batches_dir: BatchFiles) -> Iterator[Lending]:
    """An installation on each backend where ann.analyst has stored batch a."""
    yield from _installation(monkeypatch, tmp_path, config_path, store_url, trained_model,
                             batches_dir, "batch_a")


@pytest.fixture
def ffa_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_path: Path,
               trained_model: TrainedModel, batches_dir: BatchFiles) -> Iterator[Lending]:
    """On SQLite only, an installation where ann.analyst has stored batch a."""
    yield from _installation(monkeypatch, tmp_path, config_path, sqlite_url(tmp_path),
                             trained_model, batches_dir, "batch_a")


@pytest.fixture
def ff_pg(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          config_path: Path, trained_model: TrainedModel, batches_dir: BatchFiles) -> Iterator[Lending]:
    """A fresh installation on PostgreSQL only (mark the test ``postgres``)."""
    cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database(f"store_{os.getpid()}_{next(_pg_numbers)}")
    yield from _installation(monkeypatch, tmp_path, config_path, url, trained_model, batches_dir)


_pg_numbers = itertools.count(1)
