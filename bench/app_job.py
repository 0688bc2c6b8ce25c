"""The app's own interactions, timed on the server: median and p95 of each.

    python -m bench.app_job [--runs 7] [--big-rows 1M] [--skip-big]

What is timed is one Streamlit script run as the server executes it, measured around
``AppTest.run()`` in this process (``streamlit.testing``): the page script, every service
call and store query it makes, and building the elements sent to the browser. The browser's
own rendering and the WebSocket are not in it (a real browser adds roughly 0.1-0.3 s; the
server log of ``FINFLOW_LOG_TIMINGS=1`` gives the same server-side figure per run on a live
server). Each interaction is run once untimed first (imports, caches), then ``--runs`` times.

Interactions on the demo installation (``finflow setup --demo``: the shipped config, 20,000
rows of history, three sample weeks, one user per role), in ``results/app_home``:

* ``sign_in_<role>``: the sign-in form submitted, up to the role's landing page drawn;
* ``page_<page>``: changing to each page as the manager (the analyst for Batches, the
  officer for New application);
* ``drift_pick_feature``: picking another column on the Drift page;
* ``what_if_step``: one step of the band-edge slider on the Model & strategy page;
* ``upload_preview_3000`` / ``upload_store_3000``: a 3,000-row file through the quality
  gate, then scored and stored (each run a new file);

and over a store holding ``--big-rows`` applications (``results/app_home_big``, built once
through the ordinary weekly runs, 100k rows a week): ``big_sign_in_manager`` (to the
Portfolio), ``big_page_portfolio``, ``big_page_drift`` and ``big_drift_pick_feature``.

A benchmark, not a test: nothing here asserts a time. Other work on the machine changes the
figures (the load average is recorded).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import RESULTS, emit, label, median_p95, parse_size, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
PASSWORD = "bench-app-password-7"
ROLES = ("admin", "analyst", "officer", "manager")
BIG_WEEK_ROWS = 100_000
TIMEOUT = 120
#: the page each interaction is timed as: (page file, role)
PAGE_AS = {
    "portfolio": ("pages/portfolio.py", "manager"),
    "review_queue": ("pages/review_queue.py", "officer"),
    "new_application": ("pages/new_application.py", "officer"),
    "upload": ("pages/upload.py", "analyst"),
    "drift": ("pages/drift.py", "manager"),
    "model": ("pages/model.py", "manager"),
    "audit": ("pages/audit.py", "manager"),
    "account": ("pages/account.py", "manager"),
}


def use_home(home: Path) -> None:
    """Point the app and the services at ``home`` (before any config is loaded)."""
    os.environ["FINFLOW_HOME"] = str(home)
    os.environ.pop("FINFLOW_CONFIG", None)
    os.environ.pop("FINFLOW_DATABASE_URL", None)
    os.environ.setdefault("FINFLOW_SECRET_KEY", "finflow-bench-app-secret")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def context() -> Any:
    """The installation's services, as the app holds them (one per home)."""
    from finflow_app import resources

    return resources.context()


def prepare(home: Path, big_rows: int = 0, log: Callable[[str], None] = print) -> None:
    """The demo installation in ``home`` with one user per role (built once), plus weekly
    batches of 100k applications until ``big_rows`` are stored."""
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.services.demo_setup import FIRST_WEEK, bootstrap
    from finflow_core.services.sessions import Gate

    ready = home / ".bench-app-ready"
    if not ready.exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        use_home(home)
        ctx = context()
        log(f"[app] demo installation in {home} (trains the demo model once)")
        bootstrap(ctx, demo=True, log=lambda m: log(f"[app] {m}"))
        admin = Gate(ctx).create_first_admin("admin", PASSWORD)
        for role in ROLES[1:]:
            admin.users.add(role, PASSWORD, [role])
        ready.write_text("ok\n")
    use_home(home)
    if big_rows:
        ctx = context()
        analyst = Gate(ctx).sign_in("analyst", PASSWORD)
        stored = Gate(ctx).sign_in("manager", PASSWORD).portfolio.summary().kpis()["applications"]
        week = 0
        while stored < big_rows:
            rows = min(BIG_WEEK_ROWS, big_rows - stored)
            start = FIRST_WEEK - timedelta(weeks=60 - week)
            data = generate_applications(rows, 5000 + week, start=start, days=7).drop(columns=["default"])
            t = time.perf_counter()
            analyst.batches.run(data.to_csv(index=False).encode(), name=f"bench_week_{week:02d}.csv")
            stored += rows
            week += 1
            log(f"[app] stored {rows:,} applications for the week of {start} ({time.perf_counter() - t:.0f} s; "
                f"{stored:,} in all)")


class Timed:
    """Runs of one AppTest, timed (the first run of each interaction is a warm-up)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def time(self, name: str, run: Callable[[], Any], *, warm: bool = False) -> Any:
        started = time.perf_counter()
        at = run()
        seconds = time.perf_counter() - started
        if at.exception:
            raise RuntimeError(f"{name}: {[e.value for e in at.exception]}")
        if not warm:
            self.samples.setdefault(name, []).append(seconds)
        return at

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {key: round(v, 4) for key, v in median_p95(s).items()} for k, s in self.samples.items()}


def new_app() -> Any:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def signed_in(username: str) -> Any:
    from finflow_core.services.sessions import Gate

    at = new_app()
    at.session_state["ff_user"] = Gate(context()).sign_in(username, PASSWORD).actor
    return at.run()


def navigation_only() -> None:
    """As a live server after its first session: every URL through app.py (see
    ``finflow_app.server.use_navigation_only``); AppTest resets the flag before each run."""
    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.runtime.pages_manager import PagesManager

    class NavigationPagesManager(PagesManager):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            PagesManager.uses_pages_directory = False

    app_test_module.PagesManager = NavigationPagesManager  # type: ignore[misc]


def sign_in(t: Timed, role: str, runs: int, prefix: str = "sign_in") -> None:
    def once() -> Any:
        at = new_app().run()
        at.text_input(key="signin_username").input(role)
        at.text_input(key="signin_password").input(PASSWORD)
        return at.form_submit_button[0].click()

    for k in range(runs + 1):
        at = once()
        t.time(f"{prefix}_{role}", at.run, warm=k == 0)


def page_changes(t: Timed, runs: int, prefix: str = "page", pages: tuple[str, ...] | None = None) -> None:
    for name in pages or tuple(PAGE_AS):
        path, role = PAGE_AS[name]
        at = signed_in(role)
        for k in range(runs + 1):  # to this page (timed) and away again
            at.switch_page(path)
            t.time(f"{prefix}_{name}", at.run, warm=k == 0)
            at.switch_page("pages/account.py").run()


def drift_feature(t: Timed, runs: int, name: str = "drift_pick_feature") -> None:
    at = signed_in("manager").switch_page("pages/drift.py").run()
    columns = at.selectbox(key="dr_column").options
    for k in range(runs + 1):
        at.selectbox(key="dr_column").select_index((k + 1) % len(columns))
        t.time(name, at.run, warm=k == 0)


def what_if(t: Timed, runs: int) -> None:
    at = signed_in("manager").switch_page("pages/model.py").run()
    low, high = at.slider(key="md_edges").value
    for k in range(runs + 1):
        at.slider(key="md_edges").set_value((round(low + 0.1 * (k + 1), 1), high))
        t.time("what_if_step", at.run, warm=k == 0)


def upload(t: Timed, runs: int, rows: int = 3000) -> None:
    from finflow_core.lending.synthetic import generate_applications

    seed = 7700 + int(time.time()) % 100_000  # new files at every bench run: never "already stored"
    for k in range(runs + 1):
        data = generate_applications(rows, seed + k).drop(columns=["default"]).to_csv(index=False).encode()
        at = signed_in("analyst").switch_page("pages/upload.py").run()
        at.file_uploader(key="up_file").set_value((f"bench_{seed + k}.csv", data, "text/csv"))
        at = t.time(f"upload_preview_{rows}", at.run, warm=k == 0)
        at.button(key="up_score").click()
        t.time(f"upload_store_{rows}", at.run, warm=k == 0)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.app_job", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--big-rows", default="1M", help="applications in the big store (default 1M)")
    ap.add_argument("--skip-big", action="store_true", help="only the demo installation")
    ap.add_argument("--only", default="", help="comma list of: sign_in,pages,drift,what_if,upload,big")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    def wanted(part: str) -> bool:
        return not only or part in only

    navigation_only()
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "missing ScriptRunContext" noise
    load = os.getloadavg()[0]
    t = Timed()
    demo_home = RESULTS / "app_home"
    prepare(demo_home)
    if wanted("sign_in"):
        for role in ROLES:
            sign_in(t, role, args.runs)
    if wanted("pages"):
        page_changes(t, args.runs)
    if wanted("drift"):
        drift_feature(t, args.runs)
    if wanted("what_if"):
        what_if(t, args.runs)
    if wanted("upload"):
        upload(t, args.runs)
    big = 0 if args.skip_big or not wanted("big") else parse_size(args.big_rows)
    if big:
        big_home = RESULTS / f"app_home_{label(big)}"
        if not (big_home / ".bench-app-ready").exists():
            shutil.rmtree(big_home, ignore_errors=True)
            shutil.copytree(demo_home, big_home)  # the same model and users
        prepare(big_home, big)  # from here on the app opens the big home's store
        sign_in(t, "manager", args.runs, prefix="big_sign_in")  # lands on Portfolio
        page_changes(t, args.runs, prefix="big_page", pages=("portfolio", "drift"))
        drift_feature(t, args.runs, name="big_drift_pick_feature")
    emit({"method": "AppTest: one script run, server side", "runs": args.runs, "big_rows": big,
          "interactions": t.summary(), "load_before": load, "load_after": os.getloadavg()[0],
          "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
