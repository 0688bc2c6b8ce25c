"""Fixtures of the app tests (AppTest): one small installation per session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_support import Installation, app_env, installed, write_test_config

from finflow_core.lending.config import load_config
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.store import Store, open_store


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_app_home")) as inst:
        yield inst


@pytest.fixture
def inst(installation: Installation, monkeypatch: pytest.MonkeyPatch) -> Installation:
    """The session installation, with its environment in force for this test."""
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY"):
        monkeypatch.setenv(k, installation.env[k])
    return installation


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Store, str]:
    """An installation with no users and no model: only the first-run set-up; returns the code."""
    config_path = write_test_config(tmp_path)
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k, v in app_env(tmp_path, config_path).items():
        monkeypatch.setenv(k, v)
    store = open_store(load_config().paths.database_url)
    code = Gate(Context(load_config(), store)).issue_setup_code()
    assert code is not None
    return store, code


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the app as a live server does once any session has called ``st.navigation``.

    AppTest resets Streamlit's "uses the pages/ directory" flag before every run, so with a
    ``pages/`` folder each ``switch_page`` run would execute the page file on its own (the
    legacy deep-link path) instead of going through ``app.py``. A server sets the flag to
    False for good at the first ``st.navigation`` call; this does the same for every run.
    (The legacy path is tested on purpose by running page files directly.)
    """
    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.runtime.pages_manager import PagesManager

    class NavigationPagesManager(PagesManager):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test_module, "PagesManager", NavigationPagesManager)


@pytest.fixture(autouse=True)
def keep_main_module() -> Iterator[None]:
    """Give back pytest's own ``__main__`` after each test.

    AppTest runs each script as ``__main__``, leaving it pointing at a page file; any later
    test that spawns processes (the Dask cluster) would have every child re-run that page
    on start-up.
    """
    main = sys.modules["__main__"]
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__", "__loader__") if k in main.__dict__}
    yield
    sys.modules["__main__"] = main
    for k in ("__file__", "__spec__", "__loader__"):
        if k in saved:
            main.__dict__[k] = saved[k]
        else:
            main.__dict__.pop(k, None)
