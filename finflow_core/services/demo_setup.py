"""First-run set-up: the store, a seeded demo model and sample batches, the set-up code.

With ``demo=True`` and no model yet, the local bootstrap actor (``system``) trains the
seeded demo model on synthetic history and stores three sample weeks, so the portfolio
has trends on the first screen; more sample files wait in ``data/samples`` for an
analyst to upload. Nothing happens twice: a second run finds the model and batches.

The demo trains what it shows and no more: the same candidates, folds and history, but the
random-forest challenger with at most :data:`DEMO_FOREST_TREES` trees (the shipped config
has 300). The forest is most of the training time and is not the champion (LightGBM wins
on out-of-fold profit either way, with the same figures), so the first start is about
twice as fast and every screen shows the same champion; the model card says so in its
notes. While it trains, a line every :data:`HEARTBEAT_SECONDS` says it is still at work.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from finflow_core.lending.config import Config
from finflow_core.lending.synthetic import generate_applications
from finflow_core.services.access import SYSTEM
from finflow_core.services.context import Context
from finflow_core.services.sessions import Gate
from finflow_core.services.workbench import Workbench
from finflow_core.store import registry
from finflow_core.store.batch_queries import list_batches

HISTORY_SEED = 42
#: (file name, seed, drift scenario, week offset from the first sample week)
SAMPLES: tuple[tuple[str, int, str, int], ...] = (
    ("week_1.csv", 101, "none", 0),
    ("week_2.csv", 102, "none", 1),
    ("week_3.csv", 103, "none", 2),
    ("week_4.csv", 104, "none", 3),
    ("week_5_recession.csv", 105, "recession", 4),
    ("week_6_expansion.csv", 106, "expansion", 5),
)
PRELOADED = 3  # sample weeks stored by the demo set-up
FIRST_WEEK = date(2026, 10, 5)
SAMPLE_ROWS = 2_000
DEMO_FOREST_TREES = 100
HEARTBEAT_SECONDS = 10.0


@dataclass
class SetupResult:
    setup_code: str | None = None
    model_version: str | None = None
    preloaded_batches: list[str] = field(default_factory=list)
    sample_files: list[Path] = field(default_factory=list)


def bootstrap(ctx: Context, *, demo: bool = False, history_rows: int = 20_000,
              log: Callable[[str], None] = lambda _: None) -> SetupResult:
    """Prepare a fresh installation; safe to run at every start."""
    result = SetupResult()
    config, store = ctx.config, ctx.store
    gate = Gate(ctx)
    if demo:
        system = Workbench(ctx, SYSTEM)
        samples = write_samples(config.paths.data_dir / "samples")
        result.sample_files = samples
        with store.connect() as conn:
            has_champion = registry.champion_version(conn) is not None
        if not has_champion:
            history = config.paths.data_dir / "demo_history.csv"
            if not history.exists():
                log(f"writing {history_rows:,} rows of seeded demo history to {history}")
                generate_applications(history_rows, HISTORY_SEED, start=FIRST_WEEK - timedelta(days=364),
                                      days=364).to_csv(history, index=False)
            demo = demo_config(config)
            names = " and ".join(n.replace("_", " ") for n in demo.model.candidates)
            log(f"training the demo model ({names}, {demo.model.cv_folds}-fold cross-validation)...")
            started = time.monotonic()
            with heartbeat(log, started):
                outcome = Workbench(dataclasses.replace(ctx, config=demo), SYSTEM).models.train(history)
            result.model_version = outcome.version
            log(f"demo model {outcome.version} ({outcome.card['model']}) is the champion "
                f"({time.monotonic() - started:.0f} s)")
        if not list_batches(store, limit=1):
            for path in samples[:PRELOADED]:
                summary = system.batches.run(path)
                result.preloaded_batches.append(summary.batch_id)
                log(f"stored sample batch {path.name}: {summary.rows_in:,} applications")
    if not gate.has_users():
        result.setup_code = gate.issue_setup_code()
    return result


def demo_config(config: Config) -> Config:
    """The installation's config with the demo's lighter forest (see the module doc)."""
    forest = config.model.random_forest.to_dict()
    trees = int(forest.get("n_estimators", DEMO_FOREST_TREES))
    if "random_forest" not in config.model.candidates or trees <= DEMO_FOREST_TREES:
        return config
    note = (f"Demo set-up: the random-forest challenger was trained with {DEMO_FOREST_TREES} trees "
            f"(the config says {trees}) to keep the first start short; it is not the champion.")
    model = dataclasses.replace(config.model, random_forest={**forest, "n_estimators": DEMO_FOREST_TREES},
                                notes=f"{config.model.notes} {note}".strip())
    return dataclasses.replace(config, model=model)


@contextmanager
def heartbeat(log: Callable[[str], None], started: float,
              every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """A line every ``every`` seconds while the block runs: long work never looks stuck."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            log(f"  ... still training ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=beat, name="finflow-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def write_samples(folder: Path, rows: int = SAMPLE_ROWS) -> list[Path]:
    """Sample weekly batches (no outcome column, as a live batch arrives)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, seed, drift, week in SAMPLES:
        path = folder / name
        if not path.exists():
            df = generate_applications(rows, seed, drift=drift, start=FIRST_WEEK + timedelta(weeks=week), days=7)
            df.drop(columns=["default"]).to_csv(path, index=False)
        paths.append(path)
    return paths
