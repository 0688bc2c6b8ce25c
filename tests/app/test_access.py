"""Who sees what: every page for every role, and nothing for a visitor who is not allowed."""

from __future__ import annotations

import pytest
from app_support import ROOT, TIMEOUT, app_as, data_elements, no_exception, page_as, texts
from streamlit.testing.v1 import AppTest

from finflow_app.pages import PAGES, landing
from finflow_core.services.access import can

ROLE_USERS = ("admin", "analyst", "officer", "manager")
#: A title (or other fixed text) each page shows when the user may see it.
TITLES = {
    "review_queue": "Review queue",
    "new_application": "New application",
    "upload": "Batches",
    "portfolio": "Portfolio",
    "drift": "Drift",
    "performance": "Performance",
    "model": "Model & strategy",
    "audit": "Audit trail",
    "users": "Users",
    "account": "My account",
}
GUARD_TEXTS = ("You are not signed in", "Your role does not give access")
#: AppTest's refusal of a page st.navigation did not register (a missing file says otherwise).
NOT_REGISTERED = "Could not find a navigation page"


def allowed_for(principal, spec) -> bool:  # type: ignore[no-untyped-def]
    return spec.action is None or can(principal, spec.action)


@pytest.mark.parametrize("username", ROLE_USERS)
def test_navigation_lists_exactly_the_pages_of_the_role(inst, username: str) -> None:
    user = inst.users[username]
    at = app_as(user)
    no_exception(at)
    for spec in PAGES:
        if allowed_for(user, spec):
            at.switch_page(spec.path).run()
            no_exception(at)
            shown = texts(at)
            assert TITLES[spec.url_path] in shown, (username, spec.url_path)
            assert not any(g in shown for g in GUARD_TEXTS), (username, spec.url_path)
        else:
            # st.navigation did not register the page for this role: it cannot be reached
            with pytest.raises(ValueError, match=NOT_REGISTERED):
                at.switch_page(spec.path)


@pytest.mark.parametrize(("username", "page"), [
    ("officer", "review_queue"), ("analyst", "upload"), ("manager", "portfolio"), ("admin", "users"),
])
def test_each_role_lands_on_its_own_first_page(inst, username: str, page: str) -> None:
    user = inst.users[username]
    assert landing(user) == page
    at = app_as(user)
    no_exception(at)
    assert TITLES[page] in [t.value for t in at.title]


def test_signed_out_visitor_sees_only_the_sign_in_form(inst) -> None:
    at = app_as(None)
    no_exception(at)
    assert [t.value for t in at.title] == ["FinFlow"]
    assert len(at.text_input) == 2  # username, password
    assert not at.dataframe and not at.metric and not at.get("plotly_chart")
    for spec in PAGES:
        with pytest.raises(ValueError, match=NOT_REGISTERED):
            at.switch_page(spec.path)


@pytest.mark.parametrize("spec", PAGES, ids=lambda s: s.url_path)
def test_page_file_run_directly_without_a_user_shows_only_the_guard(inst, spec) -> None:
    """What a deep link on a freshly started server does: the page file runs without app.py."""
    at = AppTest.from_file(str(ROOT / spec.path), default_timeout=TIMEOUT).run()
    no_exception(at)
    assert data_elements(at) == 0
    assert not at.title
    assert [i.value for i in at.info] == ["You are not signed in. [Sign in to FinFlow](./)"]


@pytest.mark.parametrize("spec", [p for p in PAGES if p.action is not None], ids=lambda s: s.url_path)
def test_page_file_run_directly_by_a_role_without_access_shows_only_the_guard(inst, spec) -> None:
    outsider = next(inst.users[u] for u in ROLE_USERS if not can(inst.users[u], spec.action))
    at = AppTest.from_file(str(ROOT / spec.path), default_timeout=TIMEOUT)
    at.session_state["ff_user"] = outsider
    at.run()
    no_exception(at)
    assert data_elements(at) == 0
    assert not at.title
    assert "Your role does not give access to this page." in [w.value for w in at.warning]


def test_a_disabled_user_is_signed_out_at_the_next_run(inst) -> None:
    from app_support import PASSWORD

    temp = inst.wb("admin").users.add("temp-manager", PASSWORD, ["manager"]).principal()
    at = page_as(temp, "pages/portfolio.py")
    assert "Portfolio" in [t.value for t in at.title]
    inst.wb("admin").users.disable("temp-manager")
    at.run()
    no_exception(at)
    assert not at.metric and not at.get("plotly_chart")
    assert "disabled or removed" in texts(at)


def test_a_removed_role_takes_effect_at_once(inst) -> None:
    from app_support import PASSWORD

    temp = inst.wb("admin").users.add("temp-analyst", PASSWORD, ["analyst"]).principal()
    at = AppTest.from_file(str(ROOT / "pages/drift.py"), default_timeout=TIMEOUT)
    at.session_state["ff_user"] = temp
    at.run()
    assert "Drift" in [t.value for t in at.title]
    inst.wb("admin").users.set_roles("temp-analyst", ["officer"])
    at.run()
    no_exception(at)
    assert data_elements(at) == 0
    assert "Your role does not give access to this page." in [w.value for w in at.warning]
