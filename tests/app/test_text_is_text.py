"""Text is text: ids, file names, notes, reasons, user names and the lender's config (column
labels, reason texts, the currency) that look like Markdown or HTML are shown as written on
every page, never as a link, an image or HTML. Its own installation (it stores such data and
runs with a hostile config, ``app_support.hostile_config``).

Streamlit renders Markdown in titles, captions, alerts, toasts and metrics, in the labels of
widgets, buttons, expanders and tabs, in tooltips and in radio / pills options; the check
walks the whole element tree and reads each such Markdown source: an escaped
``\\[x\\]\\(http...`` shows the text, an unescaped ``[x](http...`` (or a bare ``www.`` /
``http://``) would be a link. Plotly charts are read for ``<a``/``<img`` tags. Tables,
``st.text`` and selectbox options show text as it is."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from app_support import (
    EVIL_USER,
    FILE_NAME,
    LINK,
    PASSWORD,
    Installation,
    app_as,
    hostile_config,
    installed,
    no_exception,
    page_as,
    plain,
    store_hostile_text,
)

from finflow_app.pages import PAGES
from finflow_core.services.access import can

#: What a Markdown renderer would turn into a link, an image, HTML or an autolink (GFM links
#: ``http://`` and ``www.`` by themselves: a valid user name may be ``www.evil.example``).
LIVE = re.compile(r"(?<!\\)\]\((?:https?:)|(?<!\\)!(?<!\\)\[|(?<!\\)<img|https?(?<!\\):(?<!\\)//evil"
                  r"|(?<![\w\\])www\.evil")
#: What Streamlit's Markdown links by itself in the text as read, after backslash escapes are
#: taken away (remark-gfm's autolink-literal transform: ``http://``, ``www.``, an e-mail
#: address), so ``http\\:\\/\\/evil`` is still a link in a browser.
AUTOLINK_LITERAL = re.compile(r"(?i)https?://|www\.|[-.\w+]+@[-\w]+(?:\.[-\w]+)+")
#: What plotly draws as a link or an image (it reads a few HTML tags in its labels).
LIVE_CHART = re.compile(r"<\s*(?:a|img)\b", re.IGNORECASE)
#: Elements shown as written: tables, st.text, code, JSON (selectbox and multiselect options
#: too, but their labels and help are Markdown).
PLAIN_TEXT = {"text", "code", "json", "arrow_data_frame", "table", "exception"}
#: The proto fields Streamlit renders as Markdown: bodies of titles, captions, alerts,
#: toasts and metrics; labels of widgets, buttons, metrics, expanders and tabs; tooltips;
#: metric deltas; a progress bar's text.
MARKDOWN_FIELDS = ("body", "label", "help", "delta", "text")
#: Widgets whose options are Markdown too (pills and segmented controls are button groups).
MARKDOWN_OPTIONS = {"radio", "select_slider", "button_group"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_text_home"), hostile_config) as inst:
        store_hostile_text(inst)
        yield inst


@pytest.fixture
def hi(hostile: Installation, monkeypatch: pytest.MonkeyPatch) -> Installation:
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY"):
        monkeypatch.setenv(k, hostile.env[k])
    return hostile


def nodes(block):  # type: ignore[no-untyped-def]
    """Every element and container under ``block`` (the whole page: main and sidebar)."""
    for child in block.children.values():
        yield child
        if hasattr(child, "children"):
            yield from nodes(child)


def markdown_sources(at) -> list[str]:  # type: ignore[no-untyped-def]
    """Every string on the screen that Streamlit renders as Markdown (see MARKDOWN_FIELDS)."""
    sources: list[str] = []
    for node in nodes(at._tree):
        proto, kind = getattr(node, "proto", None), getattr(node, "type", "")
        if proto is None or kind in PLAIN_TEXT or not hasattr(proto, "DESCRIPTOR"):
            continue
        fields = proto.DESCRIPTOR.fields_by_name
        if kind == "markdown" and proto.allow_html and proto.body.startswith('<img src="/finflow/'):
            continue  # the session-cookie exchange (FinFlow's own code, see state.cookie_exchange)
        sources += [str(getattr(proto, name)) for name in MARKDOWN_FIELDS
                    if name in fields and isinstance(getattr(proto, name), str)]
        if kind in MARKDOWN_OPTIONS:
            sources += [getattr(o, "content", o) for o in proto.options]
    return sources


def live_markdown(at) -> list[str]:  # type: ignore[no-untyped-def]
    """Every Markdown source on the screen that would render a link, image or HTML, and every
    chart label plotly would draw as a link or an image."""
    live = [s for s in markdown_sources(at)
            if LIVE.search(s) or AUTOLINK_LITERAL.search(re.sub(r"\\(.)", r"\1", s))]
    for chart in at.get("plotly_chart"):
        live += [s for s in strings(json.loads(chart.proto.spec)) if LIVE_CHART.search(s)]
    return live


def strings(value) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Every string in a decoded JSON document (a plotly figure)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def shown_as_text(at) -> str:  # type: ignore[no-untyped-def]
    """What tables and plain-text elements show, as written."""
    cells = [str(v) for d in at.dataframe for v in d.value.astype(str).to_numpy().ravel()]
    return "\n".join([*cells, *(str(t.value) for t in at.text),
                      *(str(o) for s in at.selectbox for o in s.options)])


@pytest.mark.parametrize("role", ["admin", "analyst", "officer", "manager"])
def test_every_page_shows_hostile_text_as_text(hi, role: str) -> None:
    user = hi.users[role]
    live = {}
    for spec in PAGES:
        if spec.action is not None and not can(user, spec.action):
            continue
        at = page_as(user, spec.path)
        no_exception(at)
        live[spec.url_path] = live_markdown(at)
    assert {page: found for page, found in live.items() if found} == {}, role


def test_the_hostile_strings_are_on_the_screens_as_written(hi) -> None:
    batches = page_as(hi.users["analyst"], "pages/upload.py")
    assert FILE_NAME in shown_as_text(batches)
    audit = page_as(hi.users["admin"], "pages/audit.py")
    assert LINK in shown_as_text(audit)  # the decision note, in the trail's details
    audit.text_input(key="au_application").input(LINK).run()
    no_exception(audit)
    assert live_markdown(audit) == []
    assert "decision" in shown_as_text(audit)  # the application's own trail
    audit.text_input(key="au_application").input("[nothing](http://evil.example/n)").run()
    assert live_markdown(audit) == []
    assert audit.info and "evil" in audit.info[0].value  # said as text, not linked
    drift = page_as(hi.users["analyst"], "pages/drift.py")
    assert FILE_NAME in shown_as_text(drift)


def test_a_typed_in_hostile_id_is_echoed_as_text(hi) -> None:
    from test_oversight import fill_application

    at = page_as(hi.users["officer"], "pages/new_application.py")
    at = fill_application(at, "![y](http://evil.example/y.png)")
    no_exception(at)
    assert at.session_state["na_result"].valid
    assert live_markdown(at) == []
    assert any("evil" in c.value for c in at.caption)


def case_page(user, case: int):  # type: ignore[no-untyped-def]
    """The review desk showing ``case`` to ``user`` (as a click in the queue opens it)."""
    at = app_as(user)
    at.session_state["rq_case"] = case
    return at.switch_page("pages/review_queue.py").run()


def button(at, label: str):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == label)


def test_every_case_shows_hostile_text_as_text(hi) -> None:
    """A case's title (its id), reasons (the lender's texts), decisions and who holds,
    decided or proposed it (a user named www.evil.example), to officers and a manager."""
    cases = {**hi.cases, "declined by an officer": hi.wb("officer").review.find(LINK)[-1]}
    live, seen = {}, []
    for role in ("officer", "officer2", "manager", "evil"):
        for name, case in cases.items():
            at = case_page(hi.users[role], case)
            no_exception(at)
            assert at.title and "evil.example" in plain(at.title[0].value), (role, name)
            live[role, name] = live_markdown(at)
            seen += markdown_sources(at)
    assert {k: v for k, v in live.items() if v} == {}
    shown = plain("\n".join(seen))
    assert EVIL_USER in shown and "evil.example/r" in shown  # the checks saw the hostile text


def test_a_hostile_id_that_is_not_found_is_echoed_as_text(hi) -> None:
    at = page_as(hi.users["officer"], "pages/review_queue.py")
    at.text_input(key="rq_find_id").input("see www.evil.example/x")
    button(at, "Open").click().run()
    no_exception(at)
    assert at.warning and "www.evil.example/x" in plain(at.warning[0].value)
    assert live_markdown(at) == []


def test_decisions_on_hostile_cases_are_reported_as_text(hi) -> None:
    """The notices after a decision name the case and the proposing officer as text."""
    at = case_page(hi.users["officer2"], hi.cases["evil_proposed"])
    button(at, "Confirm: approve").click().run()
    no_exception(at)
    assert at.success and EVIL_USER in plain(at.success[0].value)
    assert live_markdown(at) == []

    case = hi.cases["pending"]
    external = hi.wb("officer").review.case(case).external_id
    at = page_as(hi.users["officer"], "pages/review_queue.py")
    at.text_input(key="rq_find_id").input(external)
    button(at, "Open").click().run()  # opens (and claims) the case
    at.text_input(key=f"dec_reason_{case}").input(LINK)
    button(at, "Decline").click().run()  # then the next case opens, under the notice
    no_exception(at)
    assert at.success and "evil.example" in plain(at.success[0].value)
    assert live_markdown(at) == []


def test_user_names_are_text_on_the_users_page(hi) -> None:
    at = page_as(hi.users["admin"], "pages/users.py")
    at.selectbox(key="us_pick").select(EVIL_USER).run()
    no_exception(at)
    assert any(EVIL_USER in plain(b.label) for b in at.button)  # "Disable www.evil.example"
    assert live_markdown(at) == []
    at.text_input(key=f"us_limit_{EVIL_USER}").input("2,000")
    button(at, "Save limit").click().run()
    no_exception(at)
    assert at.success and EVIL_USER in plain(at.success[0].value)
    assert live_markdown(at) == []
    # a refused name is quoted in the error message: as text
    at.text_input(key="us_new_name").input("[x](http://evil.example/u)")
    at.text_input(key="us_new_password").input(PASSWORD)
    at.multiselect(key="us_new_roles").select("officer")
    button(at, "Add user").click().run()
    no_exception(at)
    assert at.error and "evil.example/u" in plain(at.error[0].value)
    assert live_markdown(at) == []


def test_the_lenders_labels_are_text_in_the_drift_charts(hi) -> None:
    """A column label from the config (HTML here) in a chart title and a legend: plotly
    would draw ``<a href>`` as a link."""
    at = page_as(hi.users["analyst"], "pages/drift.py")
    at.selectbox(key="dr_column").select("industry").run()
    at.multiselect(key="dr_columns").select("industry").run()
    no_exception(at)
    assert len(at.get("plotly_chart")) >= 3  # the PSI bars, the distribution, PSI over time
    assert live_markdown(at) == []
