"""The review desk in a real browser: clicking a queue row, the keyboard flow, and a
waterfall whose labels never cover its values."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from e2e_desk import overlaps, queue_row, quiet
from e2e_support import Server, Timings
from playwright.sync_api import Browser, Page, expect
from test_browser import click, settle, shot, sign_in

pytestmark = pytest.mark.browser


def officer_page(browser: Browser, server: Server, name: str = "officer") -> Page:
    page = browser.new_context(viewport={"width": 1440, "height": 1300}).new_page()
    sign_in(page, server, name)
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible()
    return page


def case_heading(page: Page) -> str:
    quiet(page)
    heading = page.get_by_role("heading", level=1).filter(has_text="Case ")
    expect(heading).to_be_visible(timeout=30_000)
    return heading.inner_text().removeprefix("Case ").strip()


def press(page: Page, key: str, timings: Timings | None = None, name: str = "") -> None:
    """A key pressed with the focus on the page itself (not in a text field)."""
    quiet(page)  # a key pressed while a page is still being drawn may be lost
    page.locator("h1").first.click()  # leaves any field: single-key shortcuts need that
    started = time.monotonic()
    page.keyboard.press(key)
    settle(page)
    quiet(page)
    if timings is not None and name:
        timings.add(name, time.monotonic() - started - 0.12)


def test_clicking_a_queue_row_opens_that_case(server: Server, browser: Browser, shots: Path,
                                             timings: Timings, e2e_installation) -> None:
    page = officer_page(browser, server)
    rows = e2e_installation.wb("officer").review.queue(limit=8).rows
    target = next(r for r in rows[3:] if r.claimed_by is None)
    shot(page, shots, "review_queue_rows.png")
    started = time.monotonic()  # a row click reruns twice (the selection, then the case)
    queue_row(page, target.external_id).click()
    expect(page.get_by_role("heading", name=f"Case {target.external_id}", level=1)).to_be_visible(
        timeout=30_000)
    timings.add("open_case_by_row_click", time.monotonic() - started)
    assert case_heading(page) == target.external_id
    case = e2e_installation.wb("officer").review.case(target.id)
    assert case.claim is not None and case.claim.claimed_by == "officer"
    # back with B: the queue, and the row's selection does not reopen the case
    press(page, "b", timings, "key_back_to_queue")
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible(timeout=30_000)
    page.wait_for_timeout(800)
    settle(page)
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible()
    assert e2e_installation.wb("officer").review.case(target.id).claim is None
    page.context.close()


def test_the_keyboard_decides_and_moves_on_but_never_while_typing(
        server: Server, browser: Browser, shots: Path, timings: Timings, e2e_installation) -> None:
    review = e2e_installation.wb("manager").review
    page = officer_page(browser, server, "officer2")
    press(page, "n", timings, "key_next_case")
    first = case_heading(page)
    first_id = review.find(first)[-1]
    shot(page, shots, "review_case_keys.png")

    # typing a note with the letters of the shortcuts decides nothing
    note = page.get_by_role("textbox", name="Note (a referral needs one)")
    note.click()
    page.keyboard.type("a d f n b")
    page.wait_for_timeout(600)
    settle(page)
    assert case_heading(page) == first and review.case(first_id).status == "pending"
    expect(note).to_have_value("a d f n b")

    # A approves (the note goes with it) and the next case opens by itself
    press(page, "a", timings, "key_approve")
    expect(page.get_by_text(f"Case {first}: approve recorded.")).to_be_visible(timeout=30_000)
    decided = review.case(first_id)
    assert decided.status == "approved" and decided.decisions[-1].note == "a d f n b"
    second = case_heading(page)
    assert second != first

    # F without a note is refused; D after picking a reason code declines
    press(page, "f")
    expect(page.get_by_text("a referral needs a note saying what to look at")).to_be_visible()
    second_id = review.find(second)[-1]
    assert review.case(second_id).status == "pending"
    reason = review.case(second_id).reasons[0]["text"]
    page.locator("[data-testid='stButtonGroup'] button").first.click()  # the strongest code
    press(page, "d", timings, "key_decline")
    expect(page.get_by_text(f"Case {second}: decline recorded.")).to_be_visible(timeout=30_000)
    after = review.case(second_id)
    assert after.status == "declined" and after.decisions[-1].reason == reason
    page.context.close()


def test_the_waterfall_labels_never_cover_its_values(server: Server, browser: Browser, shots: Path,
                                                     e2e_installation) -> None:
    page = officer_page(browser, server)
    press(page, "n")
    case_heading(page)
    chart = page.locator("[data-testid='stPlotlyChart']").first
    expect(chart).to_be_visible(timeout=30_000)
    page.wait_for_timeout(500)  # plotly finishes drawing
    labels = [b for b in (t.bounding_box() for t in chart.locator(".ytick text").all()) if b]
    values = [b for b in (t.bounding_box() for t in chart.locator(".textpoint text").all()) if b]
    bars = [b for b in (p.bounding_box() for p in chart.locator(".waterfall .point path").all()) if b]
    assert len(labels) == len(values) >= 4  # base rate, steps, this case
    for v in values:
        assert not any(overlaps(v, lab) for lab in labels)
        assert not any(overlaps(v, bar) for bar in bars if bar["width"] > 1)
    for a, b in zip(values, values[1:], strict=False):
        assert not overlaps(a, b)
    names = [t.text_content() or "" for t in chart.locator(".ytick text").all()]
    assert any(n.startswith("Base rate") for n in names) and "This case" in names
    shot(page, shots, "review_waterfall.png")
    page.context.close()


def letters_issued(inst, action: str, subject: str) -> list:  # type: ignore[no-untyped-def]
    from finflow_core.services.audit import AuditFilter

    return inst.wb("admin").audit.entries(AuditFilter(action=action, subject_id=subject))


def test_a_declined_applications_letter_downloads_and_every_download_is_audited(
        server: Server, browser: Browser, shots: Path, timings: Timings, e2e_installation) -> None:
    """The letters are made only when the button is pressed (Streamlit's deferred download):
    only a browser shows that the file arrives and the audit trail records it."""
    from sqlalchemy import text

    inst = e2e_installation
    with inst.store.connect() as conn:
        case_id, external, batch_id = conn.execute(text(
            "SELECT id, external_id, batch_id FROM applications WHERE status = 'declined' "
            "AND decided_kind = 'auto' ORDER BY id LIMIT 1")).one()
    before = len(letters_issued(inst, "letter_issued", external))
    page = officer_page(browser, server)
    page.get_by_label("Find an application by its id").fill(external)
    click(page, page.get_by_role("button", name="Open"), timings, "find_application")
    assert case_heading(page) == external
    expect(page.get_by_text("This case is declined: decided automatically by the model")).to_be_visible()
    assert len(letters_issued(inst, "letter_issued", external)) == before  # nothing made on sight
    with page.expect_download(timeout=60_000) as pdf:
        page.get_by_role("button", name="Decline letter (PDF)").click()
    assert pdf.value.suggested_filename == f"decline-letter-{case_id}.pdf"
    assert Path(pdf.value.path()).read_bytes()[:5] == b"%PDF-"
    with page.expect_download(timeout=60_000) as htm:
        page.get_by_role("button", name="Decline letter (HTML)").click()
    body = Path(htm.value.path()).read_text(encoding="utf-8")
    assert "Notice of action taken on your application" in body and external in body
    issued = letters_issued(inst, "letter_issued", external)[before:]
    assert [(e.actor, e.detail["format"]) for e in issued] == [("officer", "pdf"), ("officer", "html")]
    shot(page, shots, "review_declined_letter.png")
    page.context.close()

    manager = browser.new_context(viewport={"width": 1440, "height": 1300}).new_page()
    sign_in(manager, server, "manager")  # a manager lands on the portfolio
    click(manager, manager.get_by_role("link", name="Review queue"))
    expect(manager.get_by_role("heading", name="Review queue", level=1)).to_be_visible(timeout=30_000)
    n = inst.wb("manager").letters.declined_count(batch_id)
    done = len(letters_issued(inst, "letters_issued", batch_id))
    box = manager.locator("[data-testid='stSelectbox']").filter(has_text="Batch")
    box.scroll_into_view_if_needed()
    label = next(f"{b.file_name}" for b in inst.wb("manager").batches.list() if b.id == batch_id)
    box.click()
    manager.get_by_role("option").filter(has_text=label).first.click()
    settle(manager)
    expect(manager.get_by_text(f"{n:,} declined application(s)")).to_be_visible()
    with manager.expect_download(timeout=120_000) as bulk:
        manager.get_by_role("button", name="Letters (PDF)").click()
    data = Path(bulk.value.path()).read_bytes()
    assert data[:5] == b"%PDF-" and bulk.value.suggested_filename == f"decline-letters-{batch_id}.pdf"
    batch_entries = letters_issued(inst, "letters_issued", batch_id)[done:]
    assert [(e.actor, e.detail["letters"]) for e in batch_entries] == [("manager", n)]
    manager.context.close()
