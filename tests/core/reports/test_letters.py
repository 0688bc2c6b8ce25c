"""Decline letters: a notice for every declined application, from a template, escaped,
audited, one at a time or a batch at once."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from sqlalchemy import select
from store_helpers import ANALYST, MANAGER, OFFICER, Lending
from test_report import page_count, pdf_text
from trail import audit_rows

from finflow_core.errors import ConfigError, Conflict, PermissionDenied
from finflow_core.lending.config import ColumnSpec, LenderInfo, LettersSettings
from finflow_core.lending.terms import DecisionKind, Status
from finflow_core.reports.letters import (
    Letter,
    load_template,
    parse_template,
    render_html,
    render_pdf,
)
from finflow_core.services.context import Context
from finflow_core.services.letters import principal_reasons
from finflow_core.services.workbench import Workbench
from finflow_core.store.lending_tables import applications

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

HOSTILE = Letter(
    application_id="<script>alert(1)</script>", reference="decision 7", amount="USD 12,000",
    application_date="2026-01-05", decision="declined", decision_date="2026-01-06",
    date="2026-01-07", lender_name="A & B <b>Lending</b>", lender_address=("1 Main St", "Town"),
    lender_contact=("x@example.com",), reasons=("Debt is high", "Income < expenses"),
)


def test_the_shipped_template_reads_and_fills_every_part() -> None:
    template = load_template()
    title, blocks = template.fill(HOSTILE)
    assert title == "Notice of action taken on your application"
    flat = [line for b in blocks if b is not None for line in b]
    assert "Application <script>alert(1)</script>" in flat  # filled (escaping is the renderer's)
    assert "A & B <b>Lending</b>" in flat and "1 Main St" in flat and "Town" in flat
    assert any("USD 12,000" in line and "2026-01-05" in line for line in flat)
    assert blocks.count(None) == 1  # the reasons list
    assert not any("$" in line for line in flat)


@pytest.mark.parametrize(("text", "problem"), [
    ("= T\n\n${reasons}\n\nDear ${applicant_name}", "${applicant_name}, which is not one of"),
    ("= T\n\nNo reasons here ${amount}", "must have a paragraph that is just ${reasons}"),
    ("Dear applicant\n\n${reasons}", "no title line"),
    ("= T\n\n${reasons}\n\nIt costs $5", "'$' that is not a placeholder"),
])
def test_a_template_with_a_mistake_is_refused_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="letters.template") as caught:
        parse_template(text, "mine.txt")
    assert problem in caught.value.message


def test_html_escapes_everything_it_fills_in() -> None:
    page = render_html([HOSTILE, HOSTILE], load_template())
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "A &amp; B &lt;b&gt;Lending&lt;/b&gt;" in page and "<b>" not in page
    assert "<li>Income &lt; expenses</li>" in page
    assert page.count('<div class="letter">') == 2


def test_pdf_has_a_page_per_letter_and_prints_text_as_written() -> None:
    other = dataclasses.replace(HOSTILE, application_id="APP-2", reasons=("Short history",))
    pdf = render_pdf([HOSTILE, other], load_template())
    assert pdf.startswith(b"%PDF-") and page_count(pdf) == 2
    text = pdf_text(pdf)
    assert "<script>alert(1)</script>" in text and "A & B <b>Lending</b>" in text
    assert "Income < expenses" in text and "Short history" in text
    assert "Notice of action taken on your application" in text


def test_principal_reasons_put_the_officers_first_and_never_a_protected_one(ffa: Lending) -> None:
    sex = ColumnSpec(name="owner_sex", type="category", categories=("F", "M"), role="protected",
                     nullable=True)
    config = dataclasses.replace(ffa.config, columns=(*ffa.config.columns, sex))
    stored = [{"feature": f, "text": f"{f} is bad (x 1)", "value": 1, "contribution": 1.0 - i / 10}
              for i, f in enumerate(["credit_score", "owner_sex", "interest_rate", "employees",
                                     "loan_to_income", "existing_debt"])]
    auto = principal_reasons(stored, " | ".join(r["text"] for r in stored), DecisionKind.AUTO, config)
    assert [r["feature"] for r in auto] == ["credit_score", "interest_rate", "employees",
                                            "loan_to_income"]
    manual = principal_reasons(stored, "existing_debt is bad (x 1); and my own words",
                               DecisionKind.MANUAL, config)
    assert [r["feature"] for r in manual][:2] == ["existing_debt", "credit_score"]
    assert len(manual) == 4


def _declined(ff: Lending, kind: str) -> int:
    with ff.store.connect() as conn:
        return int(conn.execute(select(applications.c.id).where(
            applications.c.status == Status.DECLINED, applications.c.decided_kind == kind)
            .order_by(applications.c.id).limit(1)).scalar_one())


def test_an_automatic_decline_gets_an_audited_notice(ffa: Lending) -> None:
    case_id = _declined(ffa, "auto")
    review = ffa.wb(OFFICER).review.case(case_id)
    out = ffa.wb(OFFICER).letters.case(case_id, "pdf")
    assert out.file_name == f"decline-letter-{review.external_id}.pdf" and out.letters == 1
    assert out.sha256 == hashlib.sha256(out.data).hexdigest() and page_count(out.data) == 1
    text = pdf_text(out.data)
    assert f"Application {review.external_id}" in text and "Example Business Lending (demo)" in text
    first = review.reasons[0]["text"]
    assert first.split(" (")[0] in text and first not in text  # the statement, not the value
    entries = [e for e in audit_rows(ffa.store, "application", review.external_id)
               if e["action"] == "letter_issued"]
    assert len(entries) == 1 and entries[0]["actor"] == OFFICER.username
    assert entries[0]["details"]["sha256"] == out.sha256
    assert entries[0]["details"]["reasons"] == [r["feature"] for r in review.reasons][:4]
    html = ffa.wb(OFFICER).letters.case(case_id, "html")
    assert html.mime == "text/html" and b"<ol><li>" in html.data


def test_an_officers_decline_gets_a_notice_and_an_open_case_does_not(ffa: Lending) -> None:
    officer = ffa.wb(OFFICER)
    case_id = ffa.pending_ids()[0]
    with pytest.raises(Conflict, match="not declined"):
        officer.letters.case(case_id)
    case = officer.review.case(case_id)
    chosen = case.reasons[-1]["text"]  # the officer picks the weakest code
    officer.review.decide(case_id, "decline", reason=f"{chosen}; internal: spoke to the bank")
    text = pdf_text(officer.letters.case(case_id).data)
    assert chosen.split(" (")[0] in text
    assert "internal" not in text and "spoke to the bank" not in text
    first_reason = text.index(chosen.split(" (")[0])
    assert all(first_reason <= text.index(r["text"].split(" (")[0]) for r in case.reasons)


def test_a_batch_of_notices_is_one_document_a_page_each_and_audited(ffa: Lending) -> None:
    batch_id = ffa.batch_ids()[0]
    manager = ffa.wb(MANAGER).letters
    n = manager.declined_count(batch_id)
    assert n == ffa.count("applications", f"WHERE batch_id = '{batch_id}' AND status = 'declined'") > 0
    pdf = manager.batch(batch_id, "pdf")
    assert pdf.letters == n and page_count(pdf.data) == n
    assert pdf.file_name == f"decline-letters-{batch_id}.pdf"
    html = manager.batch(batch_id, "html")
    assert html.data.count(b'<div class="letter">') == n
    entries = [e for e in audit_rows(ffa.store, "batch", batch_id) if e["action"] == "letters_issued"]
    assert [(e["details"]["format"], e["details"]["letters"]) for e in entries] == [("pdf", n), ("html", n)]
    with pytest.raises(PermissionDenied):
        ffa.wb(ANALYST).letters.batch(batch_id)


def test_without_a_lender_no_letter_and_a_custom_template_is_used(ffa: Lending) -> None:
    case_id = _declined(ffa, "auto")
    bare = dataclasses.replace(ffa.config, lender=None)
    with pytest.raises(ConfigError, match="lender"):
        Workbench(Context(bare, ffa.store), OFFICER).letters.case(case_id)
    (ffa.home / "letters").mkdir()
    (ffa.home / "letters" / "ours.txt").write_text(
        "= Our decision on ${application_id}\n\n${lender_name} says no.\n\n${reasons}\n")
    custom = dataclasses.replace(ffa.config, lender=LenderInfo(name="Acme Credit"),
                                 letters=LettersSettings(template="letters/ours.txt"))
    page = Workbench(Context(custom, ffa.store), OFFICER).letters.case(case_id, "html").data.decode()
    assert "Our decision on APP-" in page and "Acme Credit says no." in page
    assert "Equal Credit Opportunity" not in page
