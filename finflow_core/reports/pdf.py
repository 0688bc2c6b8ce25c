"""The manager's weekly report as PDF: the same figures and charts as the HTML one.

Drawn with reportlab (platypus for the flow of text and tables, reportlab.graphics for the
charts, from the geometry in :mod:`drawing`): pure Python, no browser, no image renderer,
no system service. Text uses an embedded TrueType font: DejaVu Sans where the system has it
(Latin, Greek, Cyrillic and more), otherwise Bitstream Vera, which ships inside reportlab.
A character the font has no glyph for is shown as its base letter (``ő`` -> ``o``) or
``?``, never as an empty box. Paragraph text is XML-escaped, so a batch called ``<b>``
or ``A & B`` prints as written instead of being read as markup.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from reportlab.graphics.shapes import Circle, Drawing, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

from finflow_core.reports import figures as fg
from finflow_core.reports import report_blocks as rb
from finflow_core.reports.drawing import Box, Chart, Dot, Label, Sketch, Stroke, layout

SYSTEM_FONTS = (  # (regular, bold): tried in order before the font reportlab ships
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
)
_RL_FONTS = Path(os.path.dirname(reportlab.__file__)) / "fonts"
VERA = (str(_RL_FONTS / "Vera.ttf"), str(_RL_FONTS / "VeraBd.ttf"))
MARGIN = 18 * mm
FRAME_WIDTH = A4[0] - 2 * MARGIN


@dataclass(frozen=True)
class Fonts:
    """Two registered font names and the characters they can draw."""

    regular: str
    bold: str
    glyphs: frozenset[int]

    def fit(self, text: str) -> str:
        """``text`` with every character the font cannot draw replaced (base letter or ``?``)."""
        out = []
        for ch in text:
            if ord(ch) in self.glyphs:
                out.append(ch)
                continue
            base = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
            out.append(base if base and all(ord(c) in self.glyphs for c in base) else "?")
        return "".join(out)


@lru_cache(maxsize=8)
def fonts(regular: str | None = None, bold: str | None = None) -> Fonts:
    """Register (once) and return the report's fonts: the given TTF files, else the first
    system font found, else Vera; a file that does not load falls back to Vera."""
    choices = [(regular, bold or regular)] if regular else [*SYSTEM_FONTS]
    for reg, bld in [*choices, VERA]:
        if not (reg and bld and Path(reg).is_file() and Path(bld).is_file()):
            continue
        try:
            names = []
            for path in (reg, bld):
                name = f"FinFlow-{Path(path).stem}"
                if name not in pdfmetrics.getRegisteredFontNames():
                    pdfmetrics.registerFont(TTFont(name, path))
                names.append(name)
        except Exception:  # a broken or unreadable font file: try the next one
            continue
        face = pdfmetrics.getFont(names[0]).face
        return Fonts(names[0], names[1], frozenset(face.charToGlyph))
    raise RuntimeError(f"no usable TrueType font, not even reportlab's own {VERA[0]}")


def render_pdf(
    figures: rb.ReportFigures,
    *,
    font: str | None = None,
    bold_font: str | None = None,
    compress: bool = True,
) -> bytes:
    """The report as PDF bytes (A4). ``font``/``bold_font``: TTF files to use instead of the
    default choice; ``compress=False`` writes plain content streams (for inspection)."""
    f = fonts(font, bold_font)
    st = _styles(f)
    buf = BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f.fit(figures.title),
        author="FinFlow",
        pageCompression=1 if compress else 0,
    )
    story: list[Flowable] = [
        Paragraph(_x(f, figures.title), st["h1"]),
        Paragraph("<br/>".join(_x(f, m) for m in figures.meta), st["meta"]),
    ]
    for section in figures.sections():
        story.append(Paragraph(_x(f, section.heading), st["h2"]))
        for block in section.blocks:
            story += _block(block, f, st, kpis=block is figures.kpis)
    story += [Spacer(1, 8), Paragraph(_x(f, figures.footnote), st["meta"])]

    def footer(canvas, doc_) -> None:  # type: ignore[no-untyped-def]
        canvas.saveState()
        canvas.setFont(f.regular, 7)
        canvas.setFillColor(colors.HexColor(fg.GREY))
        canvas.drawString(MARGIN, MARGIN / 2, f.fit(figures.title))
        canvas.drawRightString(A4[0] - MARGIN, MARGIN / 2, f"Page {doc_.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


# -- blocks -------------------------------------------------------------------------------------


def _block(block: object, f: Fonts, st: dict[str, ParagraphStyle], *, kpis: bool) -> list[Flowable]:
    if isinstance(block, rb.Table):
        return [_table(block, f, st, kpis), Spacer(1, 6)]
    if isinstance(block, Chart):
        return [drawing(layout(block, width=FRAME_WIDTH), f), Spacer(1, 4)]
    if isinstance(block, rb.Status):
        label = Paragraph(_x(f, block.label), st["status"])
        t = Table(
            [[label, Paragraph(_x(f, block.headline), st["cell"])]],
            colWidths=[28 * mm, FRAME_WIDTH - 28 * mm],
            hAlign="LEFT",
        )
        t.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (0, 0), colors.HexColor(block.colour)),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ]
            )
        )
        return [t, Spacer(1, 4)]
    if isinstance(block, rb.Note):
        return [Paragraph(_x(f, block.text), st["note"])]
    raise TypeError(f"no PDF for {type(block).__name__}")


def _table(t: rb.Table, f: Fonts, st: dict[str, ParagraphStyle], kpis: bool) -> Table:
    value = st["bold_number"] if kpis else st["number"]

    def row(cells: tuple[str, ...], header: bool = False) -> list[Paragraph]:
        left = st["head"] if header else st["cell"]
        right = st["head_number"] if header else value
        return [Paragraph(_x(f, c), left if i == 0 else right) for i, c in enumerate(cells)]

    table = Table(
        [row(t.header, True), *(row(r) for r in t.rows)],
        colWidths=_widths(t, f, kpis),
        repeatRows=1,
        hAlign="LEFT",
    )
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f4f6f8")),
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, colors.HexColor("#e4e7eb")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ]
        )
    )
    return table


def _widths(t: rb.Table, f: Fonts, kpis: bool) -> list[float]:
    """Each column as wide as its widest value or header word; the first column, which holds
    names that can be long, gets what is left of the line (and wraps)."""

    def w(text: str, font: str) -> float:
        return pdfmetrics.stringWidth(f.fit(text), font, 8) + 14  # 6 + 6 cell padding, 2 to spare

    want = []
    for i in range(len(t.header)):
        cells = max((w(r[i], f.bold if kpis and i else f.regular) for r in t.rows), default=0.0)
        words = max((w(word, f.bold) for word in t.header[i].split()), default=0.0)
        want.append(max(cells, words, 30.0))
    rest = sum(want[1:])
    if want[0] + rest <= FRAME_WIDTH:
        return [FRAME_WIDTH - rest, *want[1:]]
    first = max(FRAME_WIDTH * 0.2, FRAME_WIDTH - rest)
    scale = (FRAME_WIDTH - first) / rest  # still too wide: the figures' columns give alike
    return [first, *(x * scale for x in want[1:])]


def drawing(sketch: Sketch, f: Fonts) -> Drawing:
    """A laid-out chart as a reportlab Drawing (y flipped: reportlab's origin is bottom left)."""
    h = sketch.height
    d = Drawing(sketch.width, h)
    for s in sketch.shapes:
        if isinstance(s, Box):
            d.add(
                Rect(
                    s.x,
                    h - s.y - s.h,
                    s.w,
                    s.h,
                    fillColor=colors.HexColor(s.fill),
                    strokeColor=None,
                )
            )
        elif isinstance(s, Stroke):
            d.add(
                PolyLine(
                    [c for x, y in s.points for c in (x, h - y)],
                    strokeColor=colors.HexColor(s.colour),
                    strokeWidth=s.width,
                    strokeDashArray=[4, 3] if s.dash else None,
                )
            )
        elif isinstance(s, Dot):
            d.add(Circle(s.x, h - s.y, s.r, fillColor=colors.HexColor(s.fill), strokeColor=None))
        elif isinstance(s, Label):
            d.add(
                String(
                    s.x,
                    h - s.y,
                    f.fit(s.text),
                    fontName=f.bold if s.bold else f.regular,
                    fontSize=s.size,
                    fillColor=colors.HexColor(s.colour),
                    textAnchor=s.anchor,
                )
            )
    return d


def _styles(f: Fonts) -> dict[str, ParagraphStyle]:
    base = ParagraphStyle(
        "base",
        fontName=f.regular,
        fontSize=8,
        leading=10,
        textColor=colors.HexColor("#1f2933"),
        wordWrap="CJK",
    )  # long names break
    number = ParagraphStyle("number", base, alignment=TA_RIGHT, wordWrap=None)  # figures never do
    return {
        "h1": ParagraphStyle("h1", base, fontName=f.bold, fontSize=16, leading=20, spaceAfter=4),
        "h2": ParagraphStyle(
            "h2",
            base,
            fontName=f.bold,
            fontSize=12,
            leading=15,
            spaceBefore=10,
            spaceAfter=4,
            keepWithNext=1,
        ),
        "meta": ParagraphStyle(
            "meta", base, fontSize=8.5, leading=11, textColor=colors.HexColor(fg.GREY)
        ),
        "note": ParagraphStyle(
            "note",
            base,
            fontSize=8.5,
            leading=11,
            spaceAfter=4,
            textColor=colors.HexColor("#3e4c59"),
        ),
        "cell": base,
        "number": number,
        "bold_number": ParagraphStyle("bold_number", number, fontName=f.bold),
        "head": ParagraphStyle("head", base, fontName=f.bold),
        "status": ParagraphStyle("status", base, fontName=f.bold, textColor=colors.white),
        "head_number": ParagraphStyle("head_number", number, fontName=f.bold),
    }


def _x(f: Fonts, text: str) -> str:
    """Text for a Paragraph: drawable characters, markup characters escaped."""
    return escape(f.fit(text))
