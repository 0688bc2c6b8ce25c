"""Shared by the app tests (AppTest) and the browser tests: a small FinFlow installation.

An installation is a FINFLOW_HOME in a temporary folder with a test config (small, fast
models), a demo model trained on 3,000 generated rows, three sample weeks stored, and one
user of every role (two officers).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # finflow_app lives beside app.py, it is not installed
    sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from finflow_core.lending.config import Config, default_config_path, load_config  # noqa: E402
from finflow_core.services.access import Principal  # noqa: E402
from finflow_core.services.context import Context  # noqa: E402
from finflow_core.services.demo_setup import bootstrap  # noqa: E402
from finflow_core.services.sessions import Gate  # noqa: E402
from finflow_core.services.workbench import Workbench  # noqa: E402
from finflow_core.store import Store, open_store  # noqa: E402

APP = ROOT / "app.py"
TIMEOUT = 60  # pages import pandas, scikit-learn and SHAP: far beyond AppTest's 3 s default
PASSWORD = "correct-horse-battery"
USERS = {
    "admin": ["admin"],
    "analyst": ["analyst"],
    "officer": ["officer"],
    "officer2": ["officer"],
    "manager": ["manager"],
}
SECRET = "finflow-app-test-secret"


def write_test_config(home: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """The shipped config with small, fast models (paths stay relative to FINFLOW_HOME);
    ``edit`` changes the raw YAML document further (e.g. :func:`hostile_config`)."""
    raw = yaml.safe_load(default_config_path().read_text())
    raw["model"]["cv_folds"] = 3
    raw["model"]["random_forest"] = {**raw["model"]["random_forest"], "n_estimators": 40}
    raw["model"]["lightgbm"] = {**raw["model"]["lightgbm"], "n_estimators": 80}
    if edit is not None:
        edit(raw)
    path = home / "finflow_test_config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def app_env(home: Path, config_path: Path) -> dict[str, str]:
    return {"FINFLOW_HOME": str(home), "FINFLOW_CONFIG": str(config_path), "FINFLOW_SECRET_KEY": SECRET}


@dataclass
class Installation:
    home: Path
    config: Config
    store: Store
    users: dict[str, Principal]
    env: dict[str, str]
    cases: dict[str, int] = field(default_factory=dict)  # named cases some tests set up

    @property
    def context(self) -> Context:
        return Context(self.config, self.store)

    @property
    def gate(self) -> Gate:
        return Gate(self.context)

    def wb(self, name: str) -> Workbench:
        """The services as the named test user sees them."""
        return Workbench(self.context, self.users[name])


def build_installation(home: Path, *, history_rows: int = 3000) -> Installation:
    """A demo installation in ``home`` (the caller has set the environment)."""
    config = load_config()
    store = open_store(config.paths.database_url)
    context = Context(config, store)
    bootstrap(context, demo=True, history_rows=history_rows)
    admin = Gate(context).create_first_admin("admin", PASSWORD)
    users = {"admin": admin.actor}
    for name, roles in USERS.items():
        if name != "admin":
            users[name] = admin.users.add(name, PASSWORD, roles).principal()
    return Installation(home, config, store, users, dict(os.environ))


def new_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def app_as(user: Principal | None) -> AppTest:
    """The app, run once, with ``user`` signed in (None: signed out)."""
    at = new_app()
    if user is not None:
        at.session_state["ff_user"] = user
    return at.run()


def page_as(user: Principal, page: str) -> AppTest:
    """The app with ``user`` signed in, switched to ``page`` (e.g. "pages/portfolio.py")."""
    at = app_as(user)
    return at.switch_page(page).run()


MARKDOWN_KINDS = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success")


def plain(markdown: str) -> str:
    """Markdown source as a reader sees it: backslash escapes (``\\[``) and the invisible word
    joiner that keeps a bare link from being linked (``finflow_app.fmt.JOINER``) dropped."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def texts(at: AppTest, *, raw: bool = False) -> str:
    """Every piece of text the run rendered (markdown, titles, alerts, captions, metrics), as
    read (``raw=True``: the Markdown source, escapes included)."""
    parts: list[str] = []
    for kind in (*MARKDOWN_KINDS, "text"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    parts.extend(f"{m.label} {m.value}" for m in at.metric)
    joined = "\n".join(parts)
    return joined if raw else plain(joined)


def data_elements(at: AppTest) -> int:
    """How many data-bearing elements were rendered (tables, charts, metrics, downloads, inputs)."""
    return (len(at.dataframe) + len(at.metric) + len(at.get("plotly_chart")) + len(at.get("download_button"))
            + len(at.table) + len(at.json) + len(at.text_input) + len(at.file_uploader)
            + len(at.selectbox) + len(at.button))


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def table_with(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    """The first rendered table (as a DataFrame) that has ``column``."""
    for df in at.dataframe:
        value = df.value
        if column in value.columns:
            return value
    raise AssertionError(f"no table with a {column!r} column; tables: "
                         f"{[list(d.value.columns) for d in at.dataframe]}")


@contextmanager
def installed(home: Path, edit: Callable[[dict], None] | None = None) -> Iterator[Installation]:
    """A test installation in ``home`` with its environment set for the duration (``edit``:
    see :func:`write_test_config`)."""
    import pytest

    env = app_env(home, write_test_config(home, edit))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FINFLOW_DATABASE_URL", raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        inst = build_installation(home)
        try:
            yield inst
        finally:
            inst.store.close()


# -- text that looks like Markdown or HTML (tests of "text is text") -----------------------------

LINK = "[Verify here](http://evil.example/a)"
IMAGE = "![x](http://evil.example/i.png)"
HTML = "<img src=http://evil.example/h.png>"
BARE = "see http://evil.example/b"
FILE_NAME = "![f](http://evil.example/f.png).csv"
EVIL_HOST = "evil.example"
#: A valid user name (letters, digits, dots) that GFM turns into a link by itself.
EVIL_USER = "www.evil.example"
#: The lender's YAML: labels and reason texts are free text too.
EVIL_LABEL = "[Region](http://evil.example/l)"
EVIL_HTML_LABEL = '<a href="http://evil.example/p">Industry</a>'
EVIL_REASON = "The loan amount is large: see http://evil.example/r"
EVIL_RATIO = "![r](http://evil.example/r.png) Loan relative to revenue"
EVIL_CURRENCY = "[USD](http://evil.example/cur)"


def hostile_config(raw: dict) -> None:
    """Column labels and a reason text in the lender's YAML that look like Markdown links,
    images, HTML and bare links (an ``edit`` for :func:`installed`)."""
    columns = {c["name"]: c for c in raw["dataset"]["columns"]}
    columns["region"]["label"] = EVIL_LABEL
    columns["industry"]["label"] = EVIL_HTML_LABEL
    for name, key in (("loan_amount", "reason_high"), ("credit_score", "reason_low"),
                      ("recent_delinquencies", "reason_high"), ("debt_to_income", "reason_high"),
                      ("years_in_business", "reason_low")):
        columns[name][key] = f"{EVIL_REASON} ({name})"
    ratios = {r["name"]: r for r in raw["dataset"]["ratios"]}
    ratios["loan_to_income"]["label"] = EVIL_RATIO
    raw["economics"]["currency"] = EVIL_CURRENCY


def store_hostile_text(inst: Installation) -> None:
    """Applications, a batch file name, a typed-in id, decision reasons and notes, and a band
    note that look like Markdown links, images and HTML pointing at :data:`EVIL_HOST`; an
    officer named :data:`EVIL_USER` (``inst.users["evil"]``) who decides one case, holds
    another and proposes a third to a second officer."""
    from finflow_core.lending.synthetic import generate_applications

    df = generate_applications(300, seed=31337).drop(columns=["default"])
    df.loc[:3, "application_id"] = [LINK, IMAGE, HTML, BARE]
    df.loc[4:59, "application_id"] = [f"[case {i}](http://evil.example/c{i})" for i in range(4, 60)]
    inst.wb("analyst").batches.run(df.to_csv(index=False).encode("utf-8"), name=FILE_NAME)
    admin = inst.wb("admin")
    inst.users["evil"] = admin.users.add(EVIL_USER, PASSWORD, ["officer"]).principal()
    admin.users.set_limit(EVIL_USER, 1000)
    evil = inst.wb("evil")
    pending = [case for i in range(4, 60) for case in evil.review.find(f"[case {i}](http://evil.example/c{i})")
               if evil.review.case(case).status == "pending"]
    assert len(pending) >= 4, "too few hostile ids in the review band"
    evil.review.open(pending[0])
    evil.review.decide(pending[0], "decline", reason=LINK, note=IMAGE)
    evil.review.open(pending[1])
    evil.review.decide(pending[1], "approve", reason=BARE, note=LINK)  # above its limit: a proposal
    evil.review.open(pending[2])  # held
    inst.cases.update(evil_decided=pending[0], evil_proposed=pending[1], evil_holds=pending[2],
                      pending=pending[3])
    officer = inst.wb("officer")
    officer.applications.submit({
        "application_id": "[typed](http://evil.example/t)", "application_date": "2026-11-02",
        "annual_revenue": 850_000.0, "loan_amount": 120_000.0, "term_months": 36, "interest_rate": 0.11,
        "credit_score": 560, "years_in_business": 8.0, "employees": 12, "existing_debt": 40_000.0,
        "debt_to_income": 0.9, "recent_delinquencies": 3, "industry": "retail", "region": "west",
        "collateral": "full"})
    for external in (LINK, IMAGE):
        for case_id in officer.review.find(external):
            if officer.review.case(case_id).status == "pending":
                officer.review.open(case_id)
                officer.review.decide(case_id, "decline", reason=IMAGE, note=LINK)
    inst.wb("manager").models.save_strategy(0.05, 0.4, note=LINK)
