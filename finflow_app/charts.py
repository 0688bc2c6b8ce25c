"""Plotly figures of the app: drawing only, from figures finflow_core computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from finflow_app import fmt
from finflow_app.fmt import BAND_COLOURS, BAND_NAMES, points, probability

if TYPE_CHECKING:
    from finflow_core.lending.waterfall import ProbabilityWaterfall

STATUS_COLOURS = {"approved": "#3a8d5c", "declined": "#c2473d", "pending": "#d39b2a", "referred": "#7b61a8"}

_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 340}
TEMPLATE = "plotly_white"


def _with_template(fig: go.Figure, name: str = TEMPLATE) -> go.Figure:
    """Give ``fig`` a registered Plotly template without validating it again.

    ``update_layout(template=...)`` deep-copies and re-validates the whole template: about
    35 ms a figure, most of a page's time with six charts. A registered template is valid
    already; this sets it the way Plotly sets its own default template (validation off for
    that one assignment), with the same JSON. Should Plotly's internals move, it falls back
    to the public, slower call.
    """
    import plotly.io as pio

    layout = getattr(fig, "_layout_obj", None)
    if layout is None or not hasattr(layout, "_validate"):
        return fig.update_layout(template=name)
    layout._validate = False
    try:
        layout.template = pio.templates[name]
    finally:
        layout._validate = True
    return fig


def _fig(title: str, **layout: Any) -> go.Figure:
    fig = _with_template(go.Figure())
    fig.update_layout(title={"text": title, "x": 0, "font": {"size": 15}}, **{**_LAYOUT, **layout})
    return fig


def bands_bar(counts: Mapping[str, int], title: str = "Applications by risk band") -> go.Figure:
    fig = _fig(title, showlegend=False)
    bands = [b for b in ("low", "medium", "high")]
    fig.add_bar(x=[BAND_NAMES[b] for b in bands], y=[int(counts.get(b, 0)) for b in bands],
                marker_color=[BAND_COLOURS[b] for b in bands],
                text=[f"{int(counts.get(b, 0)):,}" for b in bands], textposition="auto")
    fig.update_yaxes(title="applications")
    return fig


def band_status_bar(frame: pd.DataFrame) -> go.Figure:
    """Stacked bars: each band split by status (frame from PortfolioSummary.by('band','status'))."""
    fig = _fig("Risk distribution by band and status", barmode="stack")
    for status in ("approved", "declined", "pending", "referred"):
        part = frame[frame["status"] == status]
        counts = {str(r.band): int(r.n) for r in part.itertuples(index=False)}
        fig.add_bar(name=status, x=[BAND_NAMES[b] for b in ("low", "medium", "high")],
                    y=[counts.get(b, 0) for b in ("low", "medium", "high")],
                    marker_color=STATUS_COLOURS[status])
    fig.update_yaxes(title="applications")
    return fig


def probability_histogram(hist: pd.DataFrame) -> go.Figure:
    fig = _fig("Probability of default", showlegend=False)
    fig.add_bar(x=[f"{a:.0%}–{b:.0%}" for a, b in zip(hist["bin_start"], hist["bin_end"], strict=True)],
                y=hist["n"].tolist(), marker_color="#4a6fa5")
    fig.update_xaxes(title="probability of default")
    fig.update_yaxes(title="applications")
    return fig


WATERFALL_NOTE = (
    "Each bar adds one feature's SHAP contribution, largest first, turned from the model's raw "
    "score (log-odds for boosted trees) into probability of default and scaled so the bars run "
    "from the base rate to this case's calibrated PD. Red raises the risk, green lowers it; "
    "bold rows are the case's reason codes."
)


def waterfall(wf: ProbabilityWaterfall) -> go.Figure:
    """A case's explanation in probability of default: the base rate, one bar per feature
    that matters (every reason code among them), the rest summed, and the case's PD.

    Values stand in their own column right of the bars, so no label ever covers a value,
    whatever the bars' lengths or directions.
    """
    rows = [("Base rate (an average application)", wf.base, "absolute", False)]
    for s in wf.steps:
        name = s.label if s.feature is None else f"{s.label} = {s.value}"
        rows.append((name, s.change, "relative", s.cited))
    rows.append(("This case", 0.0, "total", False))
    labels = [f"<b>{_plain(n)}</b>" if cited else _plain(n) for n, _, _, cited in rows]
    texts = [probability(wf.base), *[points(s.change) for s in wf.steps], probability(wf.probability)]
    path = [wf.base, *[s.end for s in wf.steps]]
    hi = max(path + [wf.probability])
    column = hi * 1.04 + 0.005  # where the values stand: right of every bar
    fig = _fig(f"Why the model gives this case a PD of {probability(wf.probability)}",
               height=max(360, 34 * len(rows) + 120), showlegend=False,
               margin={"l": 10, "r": 10, "t": 40, "b": 60})
    fig.add_trace(go.Waterfall(
        orientation="h", y=labels, x=[r[1] for r in rows], measure=[r[2] for r in rows],
        increasing={"marker": {"color": "#c2473d"}}, decreasing={"marker": {"color": "#3a8d5c"}},
        totals={"marker": {"color": "#4a6fa5"}}, connector={"line": {"color": "#9aa5b1"}},
        hovertemplate="%{y}: %{x:.2%}<extra></extra>", name="probability of default",
    ))
    fig.add_trace(go.Scatter(
        x=[column] * len(rows), y=labels, mode="text", text=texts, textposition="middle right",
        hoverinfo="skip", cliponaxis=False, name="values",
    ))
    fig.update_xaxes(title="probability of default (right = more likely to default)",
                     tickformat=".0%", range=[0, column * 1.18], rangemode="tozero")
    fig.update_yaxes(autorange="reversed")
    return fig


def _plain(text: Any) -> Any:
    """Text plotly draws as written (it reads a few HTML tags in labels, ``<a href>`` a live
    link among them): for every label that holds data or the lender's config (feature
    labels, category values, the currency). Anything but a string is left as it is."""
    if not isinstance(text, str):
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def psi_bars(psi: Mapping[str, float | None], labels: Mapping[str, str], watch: float,
             alert: float, title: str = "PSI of the score and each feature") -> go.Figure:
    items = sorted(((k, v) for k, v in psi.items() if v is not None), key=lambda t: t[1])
    colours = ["#c2473d" if v >= alert else "#d39b2a" if v >= watch else "#3a8d5c" for _, v in items]
    fig = _fig(title, height=max(320, 24 * len(items) + 80), showlegend=False)
    fig.add_bar(x=[v for _, v in items], y=[_plain(labels.get(k, k)) for k, _ in items], orientation="h",
                marker_color=colours, text=[f"{v:.3f}" for _, v in items], textposition="auto")
    fig.add_vline(x=watch, line_dash="dash", line_color="#d39b2a", annotation_text=f"watch {watch:g}",
                  annotation_position="bottom right")
    fig.add_vline(x=alert, line_dash="dash", line_color="#c2473d", annotation_text=f"alert {alert:g}",
                  annotation_position="top right")
    fig.update_xaxes(title="PSI")
    return fig


def psi_over_time(table: pd.DataFrame, columns: Sequence[str], labels: Mapping[str, str],
                  watch: float, alert: float) -> go.Figure:
    fig = _fig("PSI over time")
    t = table.sort_values("computed_at")
    for col in columns:
        part = t[t["column"] == col]
        fig.add_scatter(x=[fmt.when(t) for t in part["computed_at"]], y=part["psi"], mode="lines+markers",
                        name=_plain(labels.get(col, col)), hovertemplate="%{x}: PSI %{y:.3f}<extra></extra>")
    fig.add_hline(y=watch, line_dash="dash", line_color="#d39b2a", annotation_text="watch")
    fig.add_hline(y=alert, line_dash="dash", line_color="#c2473d", annotation_text="alert")
    fig.update_xaxes(title=f"batch scored at ({fmt.time_zone()})", type="category")
    fig.update_yaxes(title="PSI")
    return fig


def distribution_bars(dist: pd.DataFrame, label: str) -> go.Figure:
    fig = _fig(f"{_plain(label)}: training baseline against this batch", barmode="group")
    bins = [_plain(b) for b in dist["bin"]]  # category values are the lender's
    fig.add_bar(name="baseline", x=bins, y=dist["baseline"], marker_color="#9aa5b1")
    fig.add_bar(name="this batch", x=bins, y=dist["batch"], marker_color="#4a6fa5")
    fig.update_yaxes(title="share", tickformat=".0%")
    return fig


#: Up to this many weeks without data between two stored weeks are drawn as empty weeks;
#: a longer gap is one labelled gap on the axis.
MAX_FILLED_GAP = 12


def weekly_frame(weekly: pd.DataFrame) -> pd.DataFrame:
    """The weeks as axis categories (``week``), with the weeks between them that hold no data
    inserted as empty rows, so a line breaks there instead of joining weeks months apart."""
    rows: list[dict[str, Any]] = []
    prev: date | None = None
    for r in weekly.sort_values("week_start").to_dict("records"):
        day = date.fromisoformat(str(r["week_start"])[:10])
        if prev is not None:
            missing = (day - prev).days // 7 - 1
            if 0 < missing <= MAX_FILLED_GAP:
                rows += [{"week": (prev + timedelta(weeks=i)).isoformat()} for i in range(1, missing + 1)]
            elif missing > MAX_FILLED_GAP:
                rows.append({"week": f"{missing} weeks without data"})
        rows.append({**r, "week": day.isoformat()})
        prev = day
    return pd.DataFrame(rows, columns=["week", *weekly.columns])


def _weeks_axis(fig: go.Figure, frame: pd.DataFrame) -> None:
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=list(frame["week"]),
                     title="week of")


def weekly_counts(weekly: pd.DataFrame) -> go.Figure:
    fig = _fig("Week by week: decisions")
    w = weekly_frame(weekly)
    w["open"] = w["pending"] + w["referred"]
    for col, name in (("applications", "applications"), ("approved", "approved"),
                      ("declined", "declined"), ("open", "pending / referred")):
        fig.add_scatter(x=w["week"], y=w[col], mode="lines+markers", name=name, connectgaps=False,
                        hovertemplate="%{x}: %{y:,.0f}<extra>" + name + "</extra>")
    _weeks_axis(fig, w)
    fig.update_yaxes(title="applications", tickformat=",.0f", rangemode="tozero")
    return fig


def weekly_rates(weekly: pd.DataFrame, target: float) -> go.Figure:
    fig = _fig("Week by week: automation rate and ROI")
    w = weekly_frame(weekly)
    for col, name in (("automation_rate", "automation rate"), ("roi", "ROI")):
        fig.add_scatter(x=w["week"], y=w[col], mode="lines+markers", name=name, connectgaps=False,
                        hovertemplate="%{x}: %{y:.1%}<extra>" + name + "</extra>")
    fig.add_hline(y=target, line_dash="dash", line_color="#5f6b7a",
                  annotation_text=f"automation target {fmt.pct(target, 0)}")
    _weeks_axis(fig, w)
    fig.update_yaxes(tickformat=".0%")
    return fig


def weekly_profit(weekly: pd.DataFrame, currency: str) -> go.Figure:
    fig = _fig("Week by week: expected profit", showlegend=False)
    w = weekly_frame(weekly)
    fig.add_bar(x=w["week"], y=w["expected_profit"], marker_color="#4a6fa5",
                width=0.3 if len(w) == 1 else None,
                hovertemplate="%{x}: " + _plain(currency) + " %{y:,.0f}<extra></extra>")
    _weeks_axis(fig, w)
    fig.update_yaxes(title=_plain(currency), tickformat=",.0f")
    return fig


def segment_bars(frame: pd.DataFrame, segment: str) -> go.Figure:
    fig = _fig(f"Applications by {_plain(segment)} and band", barmode="stack")
    for band in ("low", "medium", "high"):
        part = frame[frame["band"] == band]
        fig.add_bar(name=BAND_NAMES[band], x=[_plain(v) for v in part["segment"].fillna("(none)")], y=part["n"],
                    marker_color=BAND_COLOURS[band])
    return fig


def roc_curve(fpr: Sequence[float], tpr: Sequence[float], auc: float) -> go.Figure:
    fig = _fig(f"ROC curve (out-of-fold AUC {fmt.number(auc, 3)})", showlegend=False)
    fig.add_scatter(x=list(fpr), y=list(tpr), mode="lines", line_color="#4a6fa5")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#9aa5b1"})
    fig.update_xaxes(title="false positive rate", range=[0, 1])
    fig.update_yaxes(title="true positive rate", range=[0, 1])
    return fig


def profit_curve(curve: Mapping[str, Sequence[float]], cutoff: float, low: float, high: float,
                 currency: str) -> go.Figure:
    fig = _fig("Out-of-fold profit by approval cut-off", showlegend=False)
    fig.add_scatter(x=list(curve["threshold"]), y=list(curve["profit"]), mode="lines",
                    line_color="#4a6fa5",
                    hovertemplate="below %{x:.1%}: " + _plain(currency) + " %{y:,.0f}<extra></extra>")
    fig.add_vline(x=cutoff, line_color="#1f2933", annotation_text=f"cut-off {fmt.pct(cutoff)}")
    fig.add_vrect(x0=low, x1=high, fillcolor="#d39b2a", opacity=0.15, line_width=0,
                  annotation_text="review band", annotation_position="bottom left")
    fig.update_xaxes(title="approve when probability of default is below", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title=_plain(currency), tickformat=",.0f")
    return fig


def importance_bars(importance: Mapping[str, float], labels: Mapping[str, str]) -> go.Figure:
    items = sorted(importance.items(), key=lambda t: t[1])
    fig = _fig("What drives the model overall (mean |SHAP|)", height=max(320, 24 * len(items) + 80),
               showlegend=False)
    fig.add_bar(x=[v for _, v in items], y=[_plain(labels.get(k, k)) for k, _ in items], orientation="h",
                marker_color="#4a6fa5", hovertemplate="%{y}: %{x:.3f}<extra></extra>")
    return fig
