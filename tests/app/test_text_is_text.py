"""Text is text: ids, file names, notes and reasons that look like Markdown are shown as
written on every page, never as a link, an image or HTML. Its own installation (it stores
such data).

Streamlit renders Markdown in titles, captions, alerts and metrics; the check reads each such
element's Markdown source: an escaped ``\\[x\\]\\(http...`` shows the text, an unescaped
``[x](http...`` would be a link. Tables and ``st.text`` show text as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from app_support import (
    FILE_NAME,
    LINK,
    MARKDOWN_KINDS,
    Installation,
    installed,
    no_exception,
    page_as,
    store_hostile_text,
)

from finflow_app.pages import PAGES
from finflow_core.services.access import can

#: What a Markdown renderer would turn into a link, an image, HTML or an autolink.
LIVE = re.compile(r"(?<!\\)\]\((?:https?:)|(?<!\\)!(?<!\\)\[|(?<!\\)<img|https?(?<!\\):(?<!\\)//evil")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_text_home")) as inst:
        store_hostile_text(inst)
        yield inst


@pytest.fixture
def hi(hostile: Installation, monkeypatch: pytest.MonkeyPatch) -> Installation:
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY"):
        monkeypatch.setenv(k, hostile.env[k])
    return hostile


def live_markdown(at) -> list[str]:  # type: ignore[no-untyped-def]
    """Every Markdown source on the screen that would render a link, image or HTML."""
    sources = [str(e.value) for kind in MARKDOWN_KINDS for e in getattr(at, kind)]
    sources += [str(e.value) for e in at.sidebar.markdown if not str(e.value).startswith('<img src="/finflow/')]
    for m in at.metric:
        sources += [m.label, str(m.value), str(m.delta or "")]
    return [s for s in sources if LIVE.search(s)]


def shown_as_text(at) -> str:  # type: ignore[no-untyped-def]
    """What tables and plain-text elements show, as written."""
    cells = [str(v) for d in at.dataframe for v in d.value.astype(str).to_numpy().ravel()]
    return "\n".join([*cells, *(str(t.value) for t in at.text),
                      *(str(o) for s in at.selectbox for o in s.options)])


@pytest.mark.parametrize("role", ["admin", "analyst", "officer", "manager"])
def test_every_page_shows_hostile_text_as_text(hi, role: str) -> None:
    user = hi.users[role]
    for spec in PAGES:
        if spec.action is not None and not can(user, spec.action):
            continue
        at = page_as(user, spec.path)
        no_exception(at)
        assert live_markdown(at) == [], (role, spec.url_path)


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
