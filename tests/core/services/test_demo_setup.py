"""The demo set-up trains what the demo shows, no more, and says it is still at work."""

from __future__ import annotations

import dataclasses
import time

from finflow_core.lending.config import default_config_path, load_config
from finflow_core.services.demo_setup import DEMO_FOREST_TREES, demo_config, heartbeat


def test_the_demo_forest_is_lighter_and_everything_else_is_the_config() -> None:
    config = load_config(default_config_path())
    assert config.model.random_forest.to_dict()["n_estimators"] > DEMO_FOREST_TREES
    demo = demo_config(config)
    assert demo.model.random_forest.to_dict()["n_estimators"] == DEMO_FOREST_TREES
    assert demo.model.lightgbm == config.model.lightgbm  # the champion's own settings
    assert (demo.model.candidates, demo.model.cv_folds) == (config.model.candidates, config.model.cv_folds)
    assert {k: v for k, v in demo.model.random_forest.to_dict().items() if k != "n_estimators"} == \
        {k: v for k, v in config.model.random_forest.to_dict().items() if k != "n_estimators"}
    assert f"{DEMO_FOREST_TREES} trees" in demo.model.notes  # the card says so
    assert demo.columns == config.columns and demo.economics == config.economics


def test_a_forest_already_small_is_kept() -> None:
    config = load_config(default_config_path())
    small = dataclasses.replace(config, model=dataclasses.replace(
        config.model, random_forest={**config.model.random_forest.to_dict(), "n_estimators": 40}))
    assert demo_config(small) is small


def test_the_heartbeat_speaks_while_the_work_lasts_and_stops_after() -> None:
    lines: list[str] = []
    with heartbeat(lines.append, time.monotonic(), every=0.05):
        time.sleep(0.28)
    said = len(lines)
    time.sleep(0.15)
    assert 3 <= said <= 6 and len(lines) == said
    assert all("still training" in line for line in lines)
