"""Decline letters (adverse-action notices) as HTML and PDF, from one plain-text template.

A template is plain text (see ``templates/decline_letter.txt``, the one FinFlow ships):
``#`` lines are comments, ``= `` starts the title, a blank line ends a paragraph, line
breaks inside one are kept, and a paragraph that is just ``${reasons}`` becomes the
numbered list of reasons. Placeholders are ``${name}`` (:data:`PLACEHOLDERS`); an unknown
one is refused when the template is read, so a typo never reaches an applicant.

Nothing in a template or a value is markup: the HTML escapes every character of both, the
PDF escapes them for reportlab's paragraph markup, so an application id such as
``<script>`` or ``A & B`` prints as written. Several letters make one document, a page
each. Pure: no store, no Streamlit.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape

from finflow_core.errors import ConfigError

DEFAULT_TEMPLATE = Path(__file__).with_name("templates") / "decline_letter.txt"
PLACEHOLDERS = frozenset({
    "lender_name", "lender_address", "lender_contact", "date", "application_id",
    "application_date", "amount", "decision", "decision_date", "reference", "reasons",
})
REASONS = "${reasons}"


@dataclass(frozen=True)
class Letter:
    """What one notice says; every value is already formatted for a person."""

    application_id: str
    reference: str  # the decision it reports, e.g. "decision 123"
    amount: str
    application_date: str
    decision: str  # "declined"
    decision_date: str
    date: str  # when the letter was written
    lender_name: str
    lender_address: tuple[str, ...] = ()
    lender_contact: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def values(self) -> dict[str, str]:
        return {
            "lender_name": self.lender_name, "lender_address": "\n".join(self.lender_address),
            "lender_contact": "\n".join(self.lender_contact), "date": self.date,
            "application_id": self.application_id, "application_date": self.application_date,
            "amount": self.amount, "decision": self.decision, "decision_date": self.decision_date,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class LetterTemplate:
    """A parsed template: a title and paragraphs (each a :class:`string.Template`)."""

    title: Template
    paragraphs: tuple[Template, ...]
    source: str = ""
    text: str = field(default="", repr=False)

    def fill(self, letter: Letter) -> tuple[str, list[list[str] | None]]:
        """The title and each paragraph's lines (``None``: the list of reasons)."""
        values = letter.values()
        out: list[list[str] | None] = []
        for p in self.paragraphs:
            if p.template.strip() == REASONS:
                out.append(None)
                continue
            filled = p.substitute(values)
            lines = [line.strip() for line in filled.splitlines()]
            lines = [line for line in lines if line]
            if lines:
                out.append(lines)
        return self.title.substitute(values).strip(), out


def parse_template(text: str, source: str = "<template>") -> LetterTemplate:
    """Read a template; :class:`ConfigError` naming the first unknown placeholder or a
    missing title or reasons paragraph."""
    lines = [line.rstrip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    title = next((line[2:] for line in lines if line.startswith("= ")), None)
    body = "\n".join(line for line in lines if not line.startswith("= "))
    paragraphs = tuple(Template(p.strip()) for p in re.split(r"\n\s*\n", body) if p.strip())
    if title is None:
        raise ConfigError(f"the letter template {source} has no title line (one starting '= ')",
                          key="letters.template")
    for t in (Template(title), *paragraphs):
        if not t.is_valid():
            raise ConfigError(f"the letter template {source} has a '$' that is not a placeholder: "
                              "write $$ for a dollar sign", key="letters.template")
        unknown = sorted(set(t.get_identifiers()) - PLACEHOLDERS)
        if unknown:
            raise ConfigError(f"the letter template {source} uses ${{{unknown[0]}}}, which is not "
                              f"one of {', '.join(sorted(PLACEHOLDERS))}", key="letters.template")
    if not any(p.template.strip() == REASONS for p in paragraphs):
        raise ConfigError(f"the letter template {source} must have a paragraph that is just "
                          f"{REASONS}: a decline notice states its reasons", key="letters.template")
    return LetterTemplate(Template(title), paragraphs, source, text)


def load_template(path: Path | None = None) -> LetterTemplate:
    """The template at ``path`` (the shipped one when None)."""
    p = path or DEFAULT_TEMPLATE
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the letter template {p}: {exc}", key="letters.template") from None
    return parse_template(text, str(p))


# -- HTML ---------------------------------------------------------------------------------

_CSS = """
body{font-family:Georgia,'Times New Roman',serif;color:#1f2933;margin:0;background:#f4f6f8}
.letter{background:#fff;max-width:720px;margin:24px auto;padding:48px 56px;line-height:1.45;
font-size:15px;page-break-after:always;break-after:page}
.letter:last-child{page-break-after:auto;break-after:auto}
h1{font-size:20px;margin:0 0 24px}
ol{margin:0 0 14px 0}
p{margin:0 0 14px}
@media print{body{background:#fff}.letter{margin:0;max-width:none;padding:0}}
"""


def render_html(letters: list[Letter], template: LetterTemplate) -> str:
    """One HTML document, a page (``page-break-after``) per letter; nothing unescaped."""
    title = "Decline letter" if len(letters) == 1 else f"Decline letters ({len(letters)})"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for letter in letters:
        head, blocks = template.fill(letter)
        parts.append(f'<div class="letter"><h1>{html.escape(head)}</h1>')
        for block in blocks:
            if block is None:
                items = "".join(f"<li>{html.escape(r)}</li>" for r in letter.reasons)
                parts.append(f"<ol>{items}</ol>")
            else:
                parts.append("<p>" + "<br>".join(html.escape(line) for line in block) + "</p>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- PDF ----------------------------------------------------------------------------------

def render_pdf(letters: list[Letter], template: LetterTemplate, *, compress: bool = True) -> bytes:
    """One PDF (A4), a page per letter."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import ListFlowable, ListItem, PageBreak, Paragraph, SimpleDocTemplate
    from reportlab.platypus.flowables import Flowable

    from finflow_core.reports.pdf import fonts

    f = fonts()
    body = ParagraphStyle("letter", fontName=f.regular, fontSize=10.5, leading=14.5, spaceAfter=9,
                          wordWrap="CJK")
    head = ParagraphStyle("letter_title", body, fontName=f.bold, fontSize=15, leading=19, spaceAfter=16)

    def x(text: str) -> str:
        return escape(f.fit(text))

    buf = BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=22 * mm, rightMargin=22 * mm,
                            topMargin=20 * mm, bottomMargin=20 * mm, author="FinFlow",
                            title=x("Decline letters" if len(letters) > 1 else "Decline letter"),
                            pageCompression=1 if compress else 0)
    story: list[Flowable] = []
    for n, letter in enumerate(letters):
        if n:
            story.append(PageBreak())
        title, blocks = template.fill(letter)
        story.append(Paragraph(x(title), head))
        for block in blocks:
            if block is None:
                items = [ListItem(Paragraph(x(r), body), leftIndent=14) for r in letter.reasons]
                story.append(ListFlowable(items, bulletType="1", bulletFontName=f.regular,
                                          bulletFontSize=10.5, leftIndent=18, spaceAfter=9))
            else:
                story.append(Paragraph("<br/>".join(x(line) for line in block), body))
    doc.build(story)
    return buf.getvalue()
