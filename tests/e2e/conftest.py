"""Browser tests: the real app (``streamlit run app.py``) driven by Debian's Chromium.

A session fixture prepares a small installation (see ``tests/app_support.py``), starts the
server on a free loopback port and stops it by its process id at the end.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from app_support import ROOT, Installation, installed
from e2e_support import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_FLAGS,
    SCREENSHOTS,
    Server,
    Timings,
    server_env,
    start_server,
    stop_server,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("FINFLOW_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"FINFLOW_REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium")
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing (apt-get install chromium); "
                                   "set FINFLOW_REQUIRE_BROWSER=1 to make this a failure")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright has no executable-path option: point it at the system Chromium."""
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_FLAGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}}


@pytest.fixture(scope="session")
def e2e_installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_e2e_home")) as inst:
        yield inst


@pytest.fixture(scope="session")
def server(e2e_installation: Installation) -> Iterator[Server]:
    ARTIFACTS.mkdir(exist_ok=True)
    srv = start_server(server_env(e2e_installation), ARTIFACTS / "streamlit-e2e.log")
    yield srv
    stop_server(srv.process)


@pytest.fixture
def fresh_server(e2e_installation: Installation) -> Iterator[Server]:
    """A server nobody has opened yet: Streamlit is still in its legacy pages/ mode."""
    ARTIFACTS.mkdir(exist_ok=True)
    srv = start_server(server_env(e2e_installation), ARTIFACTS / "streamlit-e2e-fresh.log")
    yield srv
    stop_server(srv.process)


@pytest.fixture(scope="session")
def timings() -> Iterator[Timings]:
    t = Timings()
    yield t
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(t.values, indent=2))


#: Screenshots worth showing in the README; copied to docs/screenshots/ when
#: FINFLOW_PUBLISH_SCREENSHOTS=1 (so an ordinary test run does not rewrite committed files).
PUBLISHED = ("upload_summary.png", "review_case.png", "new_application.png", "portfolio.png", "drift.png",
             "model_strategy.png")


@pytest.fixture(scope="session")
def shots() -> Iterator[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield SCREENSHOTS
    if os.environ.get("FINFLOW_PUBLISH_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        for name in PUBLISHED:
            if (SCREENSHOTS / name).exists():
                shutil.copyfile(SCREENSHOTS / name, docs / name)
