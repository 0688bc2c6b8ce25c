"""A lender's own config for tests, loaded in a fresh home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from finflow_core.lending.config import ENV_HOME, Config, load_config


def config_in_fresh_home(factory: pytest.TempPathFactory, config: Path, home: str) -> Iterator[Config]:
    """``config`` loaded with FINFLOW_HOME a fresh folder (and no database URL from outside)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_HOME, str(factory.mktemp(home)))
    mp.delenv("FINFLOW_DATABASE_URL", raising=False)
    try:
        yield load_config(config)
    finally:
        mp.undo()

