"""Sessions in a real browser: a reload or a typed link keeps the user signed in, a signed-out
deep link comes back to its page after sign-in, and uploads need a live session."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from app_support import PASSWORD
from e2e_support import COOKIE, IDLE, Server, session_cookie
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

def settle(page: Page) -> None:
    page.wait_for_timeout(120)
    page.wait_for_selector(IDLE, timeout=30_000)


def sign_in_form(page: Page, username: str) -> None:
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("[data-testid='stSidebar']").get_by_text(username, exact=True)).to_be_visible(
        timeout=30_000)
    settle(page)


def test_a_reload_and_a_typed_link_keep_the_user_signed_in(server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(server.url)
    sign_in_form(page, "analyst")
    expect(page.get_by_role("heading", name="Batches", level=1)).to_be_visible()
    cookie = session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert "analyst" not in cookie["value"] and len(cookie["value"]) >= 40
    assert page.evaluate("document.cookie").find(COOKIE) == -1  # page scripts cannot read it

    page.reload()
    settle(page)
    expect(page.get_by_role("heading", name="Batches", level=1)).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid='stSidebar']").get_by_text("analyst", exact=True)).to_be_visible()

    page.goto(f"{server.url}/drift")  # typed into the address bar
    settle(page)
    expect(page.get_by_role("heading", name="Drift", level=1)).to_be_visible(timeout=30_000)
    assert page.get_by_role("button", name="Sign in").count() == 0

    page.get_by_role("button", name="Sign out").click()
    settle(page)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    settle(page)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)
    assert page.locator("[data-testid='stSidebar']").get_by_text("analyst", exact=True).count() == 0
    context.close()


def test_a_signed_out_deep_link_shows_the_form_then_its_page(server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(f"{server.url}/model")
    settle(page)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=30_000)
    page.wait_for_timeout(500)
    assert page.get_by_text("Page not found").count() == 0
    sign_in_form(page, "manager")
    expect(page.get_by_role("heading", name="Model & strategy", level=1)).to_be_visible(timeout=30_000)
    assert page.url.rstrip("/").endswith("/model")
    context.close()


def test_a_deep_link_to_a_page_the_role_cannot_see_lands_on_the_first_page(server: Server,
                                                                           browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(f"{server.url}/users")
    settle(page)
    sign_in_form(page, "officer")
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Your role does not give access to Users")).to_be_visible()
    assert page.get_by_text("Page not found").count() == 0
    context.close()


def test_uploads_need_a_live_session(server: Server, browser: Browser) -> None:
    request = urllib.request.Request(f"{server.url}/_stcore/upload_file/some-session/some-file",
                                     data=b"x" * 1000, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    forged = urllib.request.Request(f"{server.url}/_stcore/upload_file/s/f", data=b"x", method="PUT",
                                    headers={"Cookie": f"{COOKIE}=made-up-token-value"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 403
    # a hand-over code that was never issued sets no cookie
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/finflow/session?code=guessed", timeout=10)
    assert refused.value.code == 403 and "set-cookie" not in {k.lower() for k in refused.value.headers}


def test_typed_links_while_signed_in_open_the_first_page_and_refuse_others_in_plain_words(
        server: Server, browser: Browser) -> None:
    """A bookmark of one's first page (Streamlit serves the default page only at "/") and a
    typed URL of a page the role does not give read FinFlow's words, never "Page not found"."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(server.url)
    sign_in_form(page, "manager")
    expect(page.get_by_role("heading", name="Portfolio", level=1)).to_be_visible(timeout=30_000)
    assert page.url.rstrip("/").endswith("/portfolio")  # "/" opens the first page under its own URL
    session_cookie(page)  # typed links are new sessions: they sign in with the cookie, once set
    for typed, heading, notice in (("portfolio", "Portfolio", None), ("drift", "Drift", None),
                                   ("users", "Portfolio", "Your role does not give access to Users"),
                                   ("new_application", "Portfolio",
                                    "Your role does not give access to New application")):
        page.goto(f"{server.url}/{typed}")
        settle(page)
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)
        assert page.get_by_text("Page not found").count() == 0, typed
        if notice:
            expect(page.get_by_text(notice)).to_be_visible()
            assert page.url.rstrip("/").endswith("/portfolio"), typed
        else:
            assert page.url.rstrip("/").endswith(f"/{typed}"), typed
    context.close()
