"""The weekly report, HTML and PDF: the same figures in both, escaped, in the local zone."""

from __future__ import annotations

import base64
import re
import time
import zlib
from datetime import UTC, datetime

import pandas as pd
import pytest

from finflow_core.lending.config import Config
from finflow_core.lending.drift import ADVICE
from finflow_core.reports import (
    build_figures,
    build_weekly_pdf,
    build_weekly_report,
    render_html,
    render_pdf,
)
from finflow_core.reports.drawing import Chart, Dot, Label, Stroke, layout, nice_ticks
from finflow_core.reports.pdf import VERA, fonts
from finflow_core.reports.report_blocks import Note, Status, Table
from finflow_core.services.portfolio import PortfolioSummary

COLUMNS = ["week_start", "band", "status", "kind", "n", "amount", "expected_profit"]


def summary(
    groups: list[tuple], hist: list[int] | None = None, segment: str | None = None
) -> PortfolioSummary:
    cols = COLUMNS[:4] + (["segment"] if segment else []) + COLUMNS[4:]
    frame = pd.DataFrame(groups, columns=cols)
    histogram = pd.DataFrame(
        {
            "bin_start": [i / 20 for i in range(20)],
            "bin_end": [(i + 1) / 20 for i in range(20)],
            "n": hist or [0] * 20,
        }
    )
    return PortfolioSummary(frame, histogram, segment, 0.7)


GROUPS = [
    ("2026-10-05", "low", "approved", "auto", 60, 6_000_000.0, 300_000.0),
    ("2026-10-05", "medium", "pending", "", 25, 2_500_000.0, 50_000.0),
    ("2026-10-05", "high", "declined", "auto", 15, 1_500_000.0, 0.0),
    ("2026-10-12", "low", "approved", "auto", 50, 5_000_000.0, 250_000.0),
    ("2026-10-12", "medium", "approved", "manual", 10, 1_000_000.0, 20_000.0),
    ("2026-10-12", "medium", "referred", "manual", 5, 500_000.0, 5_000.0),
    ("2026-10-12", "high", "declined", "auto", 35, 3_500_000.0, 0.0),
]
HIST = [40, 30, 20, 10] + [0] * 14 + [0, 100]
RUN = {
    "batch_id": "B-1",
    "file_name": "week_<b>2</b>.csv",
    "week_start": "2026-10-12",
    "status": "alert",
    "score_psi": 0.31,
    "features": {"credit_score": 0.27, "region": 0.12, "employees": 0.01},
    "counts": {},
    "computed_at": "2026-10-13T09:00:00+00:00",
    "model_version": "v1",
}
AT = datetime(2026, 10, 13, 9, 30, tzinfo=UTC)
HOSTILE = '<b>Bold</b> & "Co" <script>alert(1)</script>'
LONG = "x" * 500
NON_LATIN = "Зерно 東京 Ωmega Łódź"


def demo_summary(weeks: int = 6) -> PortfolioSummary:
    """A demo-sized portfolio: a few weeks, three segment values (one hostile, one non-Latin)."""
    rows = []
    for w in range(weeks):
        week = (pd.Timestamp("2026-09-07") + pd.Timedelta(weeks=w)).date().isoformat()
        for seg, scale in (("west", 1.0), (HOSTILE, 0.5), (NON_LATIN, 0.3)):
            n = int(400 * scale) + 10 * w
            rows += [
                (week, "low", "approved", "auto", seg, n, n * 95_000.0, n * 3_100.0),
                (week, "medium", "pending", "", seg, n // 3, n * 40_000.0, n * 400.0),
                (week, "high", "declined", "auto", seg, n // 4, n * 25_000.0, -n * 150.0),
            ]
    return summary(
        rows, hist=[50, 120, 200, 150, 90, 60, 40, 20, 10, 5] + [2] * 10, segment="region"
    )


# -- reading a PDF back (no PDF library: reportlab's own streams, inflated and decoded) --------


def _objects(pdf: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    out: dict[int, tuple[bytes, bytes | None]] = {}
    for m in re.finditer(rb"(\d+) 0 obj\s*<<(.*?)>>\s*(stream\r?\n)?", pdf, re.S):
        head, stream = m.group(2), None
        if m.group(3):
            length = int(re.search(rb"/Length (\d+)", head).group(1))
            stream = pdf[m.end() : m.end() + length]
            if b"ASCII85Decode" in head:
                stream = base64.a85decode(stream.strip().removesuffix(b"~>"), adobe=False)
            if b"FlateDecode" in head:
                stream = zlib.decompress(stream)
        out[int(m.group(1))] = (head, stream)
    return out


def _pdf_string(raw: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5C:  # backslash
            nxt = raw[i + 1 : i + 2]
            octal = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
            if octal:
                out.append(int(octal.group(), 8))
                i += 1 + len(octal.group())
                continue
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(nxt, nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def pdf_text(pdf: bytes) -> str:
    """Every string the pages draw, decoded through each font's ToUnicode map, space-joined."""
    objs = _objects(pdf)
    fonts_by_name: dict[bytes, dict[int, str]] = {}
    for head, _ in objs.values():
        for name, num in re.findall(rb"/(F[\w+]+) (\d+) 0 R", head):
            font_head = objs.get(int(num), (b"", None))[0]
            cmap_ref = re.search(rb"/ToUnicode (\d+) 0 R", font_head)
            cmap = objs[int(cmap_ref.group(1))][1] if cmap_ref else b""
            fonts_by_name[name] = {
                int(a, 16): chr(int(b, 16))
                for a, b in re.findall(rb"<([0-9A-F]{2})> <([0-9A-F]{4})>", cmap or b"")
            }
    pieces: list[str] = []
    for head, stream in objs.values():
        if stream is None or b"/Length1" in head or b"begincmap" in stream:
            continue
        font: dict[int, str] = {}
        for m in re.finditer(rb"/(F[\w+]+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", stream, re.S):
            if m.group(1):
                font = fonts_by_name.get(m.group(1), {})
            else:
                pieces.append("".join(font.get(b, chr(b)) for b in _pdf_string(m.group(2))))
    return " ".join(pieces)


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", pdf))


def cells(fig) -> list[str]:  # type: ignore[no-untyped-def]
    """Every text the figures put in a table, note or status line."""
    out: list[str] = []
    for section in fig.sections():
        for b in section.blocks:
            if isinstance(b, Table):
                out += [*b.header, *(c for r in b.rows for c in r)]
            elif isinstance(b, Note):
                out.append(b.text)
            elif isinstance(b, Status):
                out += [b.label, b.headline]
    return out


# -- HTML ---------------------------------------------------------------------------------------


def test_report_carries_kpis_bands_weeks_and_drift(config: Config) -> None:
    s = summary(GROUPS, hist=HIST)
    html = build_weekly_report(
        s,
        config,
        drift_run=RUN,
        generated_by="manager",
        generated_at=AT,
        filters_text="Region in west",
    )
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    k = s.kpis()
    # worked out by hand from GROUPS: 160 of 200 in the automatic bands; profit 625,000 on
    # 12,000,000 approved
    assert (k["applications"], k["approved"], k["automation_rate"]) == (200, 120, 0.8)
    assert k["roi"] == pytest.approx(625_000 / 12_000_000)
    assert "<td>Applications</td><td>200</td>" in html
    assert "<td>Declined</td><td>50</td>" in html
    assert "<td>Automation rate</td><td>80.0% (meets target 70.0%, +10.0 pts)</td>" in html
    assert "<td>Expected profit</td><td>USD 625,000</td>" in html
    assert "<td>Return on amount approved (ROI)</td><td>5.2%</td>" in html
    assert (
        "<td>Low risk (auto-approve)</td><td>110</td><td>55.0%</td><td>USD 11,000,000</td>" in html
    )
    assert "<td>High risk (auto-decline)</td><td>50</td><td>25.0%</td>" in html
    # both weeks, the referred case counted as pending
    assert "<td>2026-10-05</td><td>100</td><td>60</td><td>15</td><td>25</td><td>75.0%</td>" in html
    assert "<td>2026-10-12</td><td>100</td><td>60</td><td>35</td><td>5</td>" in html
    assert html.count("<td>95% – 100%</td>") == 1 and "<td>20% – 25%</td>" not in html
    # the charts: band bars, two line charts and the profit bars (plus the PD histogram)
    assert html.count("<svg ") == 5 and 'aria-label="Expected profit by week"' in html
    # drift: status, advice, the features above the watch line only, strongest first
    assert ">ALERT</span>" in html and ADVICE["alert"] in html
    assert html.index("Credit score") < html.index("<td>Region</td>")
    assert "Employees" not in html
    assert "generated 2026-10-13 09:30 UTC by manager" in html
    assert "measured 2026-10-13 09:00 UTC" in html
    assert "Filters: Region in west" in html


def test_report_is_self_contained_and_escapes_data(config: Config) -> None:
    html = build_weekly_report(
        demo_summary(),
        config,
        drift_run={**RUN, "file_name": HOSTILE},
        filters_text="<script>x</script>",
        generated_by="<i>eve</i>",
    )
    assert "<script" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "&lt;i&gt;eve&lt;/i&gt;" in html
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; &quot;Co&quot;" in html  # segment value and batch name
    assert not re.search(r"(src|href)\s*=", html)  # no external images, fonts or links
    assert "http" not in html and "url(" not in html


def test_report_below_target_and_without_drift_or_applications(config: Config) -> None:
    low_auto = [
        ("2026-10-05", "medium", "pending", "", 80, 8e6, 1e5),
        ("2026-10-05", "low", "approved", "auto", 20, 2e6, 1e5),
    ]
    html = build_weekly_report(summary(low_auto), config)
    assert "20.0% (below target 70.0%, -50.0 pts)" in html
    assert "No drift measurement yet" in html
    empty = build_weekly_report(summary([]), config)
    assert "<td>Applications</td><td>0</td>" in empty
    assert "<td>Automation rate</td><td>0.0% (below target 70.0%, -70.0 pts)</td>" in empty
    assert empty.count("No applications in the selection.") == 2  # PD and weekly sections
    assert "<svg" not in empty and "nan" not in empty.lower().replace("financ", "")


# -- PDF ----------------------------------------------------------------------------------------


def test_pdf_carries_the_same_figures_as_the_html(config: Config) -> None:
    fig = build_figures(
        demo_summary(), config, drift_run=RUN, generated_by="manager", generated_at=AT
    )
    pdf, html = render_pdf(fig), render_html(fig)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert 2 <= page_count(pdf) <= 6
    text = pdf_text(pdf)
    kpis = fig.kpi_values
    # by hand: per segment-week n + n // 3 + n // 4 applications and 3,350 x n profit
    assert kpis["Applications"] == "7,542" and kpis["Expected profit"] == "USD 15,979,500"
    for name, value in kpis.items():
        assert name in text and value in text, (name, value)
        assert f"<td>{name}</td><td>{value}</td>" in html
    # every cell, as the font draws it, whatever wraps where (a header wraps at its spaces)
    flat = text.replace(" ", "")
    shown = [fonts().fit(c).replace(" ", "") for c in cells(fig)]
    assert len(shown) > 100
    missing = [c for c in shown if c not in flat]
    assert not missing, missing[:5]
    for title in (
        "Applications by risk band",
        "Applications and decisions by week",
        "Automation rate and ROI by week",
        "Expected profit by week",
    ):
        assert title in text and f'aria-label="{title}"' in html  # the same charts in both
    assert "automation target 70%" in text and "week_<b>2</b>.csv" in text


def test_pdf_builds_with_hostile_long_and_non_latin_names(config: Config) -> None:
    run = {**RUN, "file_name": HOSTILE + LONG}
    fig = build_figures(
        demo_summary(2), config, drift_run=run, filters_text=NON_LATIN + " & <x>", generated_by=LONG
    )
    vera = render_pdf(fig, font=VERA[0], bold_font=VERA[1])  # the font that always ships
    text = pdf_text(vera)
    assert '<b>Bold</b> & "Co" <script>alert(1)</script>' in text  # printed, not read as markup
    assert "x" * 500 not in text and "x…" in text.replace(" ", "")  # clipped, marked
    assert "Ωmega Łódz" in text and "????? ??" in text  # Vera has Ω and Ł; ź -> z; else "?"
    if not fonts().regular.endswith("Vera"):  # a system font with Cyrillic (DejaVu on Debian)
        assert "Зерно" in pdf_text(render_pdf(fig))


def test_empty_portfolio_gives_a_short_sensible_pdf(config: Config) -> None:
    pdf = build_weekly_pdf(summary([]), config, generated_at=AT)
    text = pdf_text(pdf)
    assert page_count(pdf) == 1
    assert text.count("No applications in the selection.") == 2
    assert "No drift measurement yet" in text and "Applications 0" in text


def test_times_are_shown_in_the_installation_zone(config: Config) -> None:
    s = summary(GROUPS)
    for tz, shown in (
        ("Europe/London", "2026-10-13 10:30 BST"),
        ("America/New_York", "2026-10-13 05:30 EDT"),
    ):
        fig = build_figures(s, config, drift_run=RUN, generated_at=AT, tz=tz)
        assert f"generated {shown}" in render_html(fig)
        assert f"generated {shown}" in pdf_text(render_pdf(fig))
    with pytest.raises(ValueError, match="time zone"):
        build_figures(s, config, tz="Atlantis/Capital")


def test_pdf_time_for_a_demo_portfolio(config: Config) -> None:
    fig = build_figures(demo_summary(6), config, drift_run=RUN)
    render_pdf(fig)  # fonts registered once per process
    start = time.perf_counter()
    pdf = render_pdf(fig)
    assert time.perf_counter() - start < 2.0 and len(pdf) < 200_000


# -- charts -------------------------------------------------------------------------------------


def test_weeks_months_apart_are_not_joined_and_losses_read_as_losses(config: Config) -> None:
    groups = [
        (w, "low", "approved", "auto", 10, 1e6, p)
        for w, p in (("2026-10-05", 20_000.0), ("2026-10-12", -50_000.0), ("2027-02-01", 5_000.0))
    ]
    fig = build_figures(summary(groups), config)
    counts, _rates, profit = fig.weekly_charts
    assert counts.joined == (True, False)
    lines = [s for s in layout(counts).shapes if isinstance(s, Stroke) and s.width == 1.6]
    assert len(lines) == 3 and all(len(s.points) == 2 for s in lines)  # one segment per series
    assert len([s for s in layout(counts).shapes if isinstance(s, Dot)]) == 9
    assert profit.value_labels == ("USD 20.0k", "-USD 50.0k", "USD 5.0k")
    assert profit.bar_colours[1] != profit.bar_colours[0]
    assert profit.ticks[0][0] < 0 and profit.ticks[0][1].startswith("-USD")


def test_a_single_week_is_one_narrow_bar_with_day_labels(config: Config) -> None:
    fig = build_figures(summary(GROUPS[:3]), config)
    sketch = layout(fig.weekly_charts[2])
    bars = [s for s in sketch.shapes if type(s).__name__ == "Box" and s.h > 1]
    assert len(bars) == 1 and bars[0].w <= 56
    assert [
        s.text
        for s in sketch.shapes
        if isinstance(s, Label) and s.anchor == "middle" and s.text.startswith("2026")
    ] == ["2026-10-05"]


def test_nice_ticks_cover_the_values_and_zero() -> None:
    assert nice_ticks(0, 87) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(-50_000, 20_000)[0] <= -50_000 and 0 in nice_ticks(-50_000, 20_000)
    assert nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.55, 0.85)[-1] >= 0.85 and nice_ticks(0.55, 0.85)[0] == 0


def test_every_chart_has_its_values(config: Config) -> None:
    fig = build_figures(demo_summary(3), config)
    charts = [b for s in fig.sections() for b in s.blocks if isinstance(b, Chart)]
    assert len(charts) == 5
    band = fig.band_chart
    assert band is not None and sum(band.series[0].values) == demo_summary(3).total


def test_drift_with_too_few_rows_and_missing_values_reads_sensibly(config: Config) -> None:
    run = {
        "batch_id": "B-9",
        "file_name": None,
        "week_start": None,
        "status": "insufficient_data",
        "score_psi": None,
        "features": {"region": None, "credit_score": float("nan")},
    }
    fig = build_figures(summary(GROUPS), config, drift_run=run)
    status, advice, none_flagged = fig.drift
    assert isinstance(status, Status) and status.label == "INSUFFICIENT DATA"
    assert status.headline == "latest batch B-9 (week of –), score PSI –"
    assert "Too few rows" in advice.text and "No feature above" in none_flagged.text
    text = pdf_text(render_pdf(fig)) + render_html(fig)
    assert not re.search(r"\b(None|nan|NaN|NaT|null)\b", text)


def test_pdf_needs_no_browser_process_or_network(config: Config, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import socket
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the PDF tried to start a process or open a connection")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(os, "system", refuse)
    fonts.cache_clear()
    pdf = render_pdf(build_figures(demo_summary(3), config, drift_run=RUN))
    assert pdf.startswith(b"%PDF-") and page_count(pdf) >= 2
