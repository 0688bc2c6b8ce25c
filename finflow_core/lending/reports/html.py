"""The manager's weekly report: one self-contained HTML page to send on.

Pure: it takes the portfolio figures (and optionally the latest drift run) and returns an
HTML string with inline styles only: no scripts, no external fonts, images or links, so
it opens the same in any mail client or browser, offline. Every value taken from the
data is HTML-escaped (batch names and segments come from uploaded files).
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from typing import Any

from finflow_core.lending.config import Config
from finflow_core.lending.drift import ALERT, STABLE, WATCH
from finflow_core.services.portfolio import PortfolioSummary

BAND_LABELS = {"low": "Low risk (auto-approve)", "medium": "Medium (manual review)",
               "high": "High risk (auto-decline)"}
STATUS_COLOURS = {STABLE: "#2e7d32", WATCH: "#b26a00", ALERT: "#c62828"}
_CSS = """
body{font-family:Arial,Helvetica,sans-serif;color:#1f2933;max-width:960px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d9dee3;padding-bottom:4px}
.meta{color:#5f6b7a;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:8px}
th,td{border-bottom:1px solid #e4e7eb;padding:5px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f4f6f8}
.kpis td.v{font-weight:bold}
.bar{display:inline-block;height:12px;background:#4a6fa5;vertical-align:middle}
.status{display:inline-block;padding:4px 10px;border-radius:4px;color:#fff;font-weight:bold}
.note{font-size:13px;color:#3e4c59}
"""


def build_weekly_report(
    summary: PortfolioSummary,
    config: Config,
    *,
    drift_run: dict[str, Any] | None = None,
    filters_text: str = "",
    generated_by: str = "",
    generated_at: datetime | None = None,
    title: str = "FinFlow weekly portfolio report",
) -> str:
    """The report as one HTML document (a string)."""
    currency = config.economics.currency
    k = summary.kpis()
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">Dataset {_e(config.dataset_name)} &middot; generated {_e(when)}'
        + (f" by {_e(generated_by)}" if generated_by else "")
        + (f"<br>Filters: {_e(filters_text)}" if filters_text else "<br>Filters: none (whole portfolio)")
        + "</p>",
        "<h2>Key figures</h2>",
        _kpi_table(k, currency),
        "<h2>Risk distribution</h2>",
        _band_table(summary),
        "<h2>Probability of default</h2>",
        _histogram_table(summary),
        "<h2>Week by week</h2>",
        _weekly_table(summary, currency),
        "<h2>Population drift</h2>",
        _drift_section(drift_run, config),
        '<p class="meta">Expected profit and ROI are model expectations (probability-weighted), '
        "not realised results.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


# -- sections -------------------------------------------------------------------------------

def _kpi_table(k: dict[str, float], currency: str) -> str:
    target = k["automation_target"]
    rate = k["automation_rate"]
    versus = "meets" if rate >= target else "below"
    rows = [
        ("Applications", _int(k["applications"])),
        ("Approved", _int(k["approved"])),
        ("Declined", _int(k["declined"])),
        ("Pending review", _int(k["pending"])),
        ("Referred", _int(k["referred"])),
        ("Automation rate", f"{_pct(rate)} ({versus} target {_pct(target)})"),
        ("Approval rate", _pct(k["approval_rate"])),
        ("Expected profit", _money(k["expected_profit"], currency)),
        ("Amount approved", _money(k["amount_approved"], currency)),
        ("Return on amount approved (ROI)", _pct(k["roi"])),
    ]
    body = "".join(f'<tr><td>{_e(name)}</td><td class="v">{_e(value)}</td></tr>' for name, value in rows)
    return f'<table class="kpis"><tr><th>Figure</th><th>Value</th></tr>{body}</table>'


def _band_table(summary: PortfolioSummary) -> str:
    by_band = summary.by("band")
    counts = {str(r.band): int(r.n) for r in by_band.itertuples(index=False)}
    amounts = {str(r.band): float(r.amount) for r in by_band.itertuples(index=False)}
    total = sum(counts.values()) or 1
    rows = []
    for band, label in BAND_LABELS.items():
        n = counts.get(band, 0)
        share = n / total
        rows.append(
            f"<tr><td>{_e(label)}</td><td>{_int(n)}</td><td>{_pct(share)}</td>"
            f"<td>{_e(_compact(amounts.get(band, 0.0)))}</td>"
            f'<td style="text-align:left">{_bar(share)}</td></tr>'
        )
    return ("<table><tr><th>Band</th><th>Applications</th><th>Share</th><th>Amount requested</th>"
            f'<th style="text-align:left">Distribution</th></tr>{"".join(rows)}</table>')


def _histogram_table(summary: PortfolioSummary) -> str:
    h = summary.histogram
    if h.empty or int(h["n"].sum()) == 0:
        return '<p class="note">No applications in the selection.</p>'
    total = int(h["n"].sum())
    peak = max(int(h["n"].max()), 1)
    rows = []
    for r in h.itertuples(index=False):
        n = int(r.n)
        if n == 0:
            continue
        rows.append(
            f"<tr><td>{r.bin_start:.0%} &ndash; {r.bin_end:.0%}</td><td>{_int(n)}</td>"
            f"<td>{_pct(n / total)}</td><td style=\"text-align:left\">{_bar(n / peak)}</td></tr>"
        )
    return ("<table><tr><th>Probability of default</th><th>Applications</th><th>Share</th>"
            f'<th style="text-align:left"></th></tr>{"".join(rows)}</table>')


def _weekly_table(summary: PortfolioSummary, currency: str) -> str:
    w = summary.weekly()
    if w.empty:
        return '<p class="note">No applications in the selection.</p>'
    rows = "".join(
        f"<tr><td>{_e(str(r.week_start))}</td><td>{_int(r.applications)}</td><td>{_int(r.approved)}</td>"
        f"<td>{_int(r.declined)}</td><td>{_int(r.pending + r.referred)}</td><td>{_pct(r.automation_rate)}</td>"
        f"<td>{_e(_money(r.expected_profit, currency))}</td><td>{_pct(r.roi)}</td></tr>"
        for r in w.sort_values("week_start").itertuples(index=False)
    )
    return ("<table><tr><th>Week of</th><th>Applications</th><th>Approved</th><th>Declined</th>"
            "<th>Pending / referred</th><th>Automation</th><th>Expected profit</th><th>ROI</th></tr>"
            f"{rows}</table>")


def _drift_section(run: dict[str, Any] | None, config: Config) -> str:
    if run is None:
        return '<p class="note">No drift measurement yet: no batch has been scored.</p>'
    from finflow_core.services.monitoring import ADVICE

    status = str(run.get("status", STABLE))
    colour = STATUS_COLOURS.get(status, "#5f6b7a")
    watch = config.monitoring.psi_watch
    features = {k: v for k, v in (run.get("features") or {}).items() if _finite(v)}
    flagged = sorted(((k, v) for k, v in features.items() if v >= watch), key=lambda t: -t[1])[:8]
    score = run.get("score_psi")
    lines = [
        f'<p><span class="status" style="background:{colour}">{_e(status.upper())}</span> '
        f"latest batch {_e(str(run.get('file_name') or run.get('batch_id', '')))} "
        f"(week of {_e(str(run.get('week_start', '')))}), score PSI "
        f"{_e(f'{score:.3f}' if _finite(score) else 'n/a')}</p>",
        f'<p class="note">{_e(ADVICE.get(status, ""))}</p>',
    ]
    if flagged:
        rows = "".join(
            f"<tr><td>{_e(_label(config, name))}</td><td>{psi:.3f}</td></tr>" for name, psi in flagged
        )
        lines.append(f"<table><tr><th>Feature above the watch line ({watch:g})</th><th>PSI</th></tr>{rows}</table>")
    else:
        lines.append(f'<p class="note">No feature above the watch line ({watch:g}).</p>')
    return "\n".join(lines)


# -- formatting -----------------------------------------------------------------------------

def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _int(v: Any) -> str:
    return f"{int(v):,}"


def _pct(v: float) -> str:
    return f"{v:.1%}"


def _money(v: float, currency: str) -> str:
    return f"{currency} {v:,.0f}"


def _compact(v: float) -> str:
    for limit, suffix in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if abs(v) >= limit:
            return f"{v / limit:,.1f}{suffix}"
    return f"{v:,.0f}"


def _bar(share: float) -> str:
    width = max(0.0, min(1.0, share)) * 300
    return f'<span class="bar" style="width:{width:.0f}px"></span>'


def _label(config: Config, name: str) -> str:
    if name == "score":
        return "Score"
    try:
        return config.feature_display(name)
    except KeyError:
        return name
