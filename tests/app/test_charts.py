"""The app's charts: the template is the one the public Plotly call would give, made fast."""

from __future__ import annotations

import json
import time

import plotly.graph_objects as go
import plotly.io as pio

from finflow_app import charts


def test_a_chart_has_the_plotly_white_template_as_update_layout_gives_it() -> None:
    fast = charts.bands_bar({"low": 3, "medium": 2, "high": 1})
    slow = go.Figure().update_layout(template=charts.TEMPLATE)
    assert json.loads(pio.to_json(fast))["layout"]["template"] == json.loads(pio.to_json(slow))["layout"]["template"]
    fast.update_layout(title="still validated afterwards")  # validation is back on
    try:
        fast.update_layout(not_a_layout_property=1)
    except ValueError:
        pass
    else:
        raise AssertionError("layout validation stayed off")


def test_six_charts_cost_far_less_than_six_template_copies() -> None:
    charts.bands_bar({"low": 1})
    started = time.perf_counter()
    for _ in range(6):
        charts.bands_bar({"low": 3, "medium": 2, "high": 1})
    fast = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(6):
        go.Figure().update_layout(template=charts.TEMPLATE)
    copies = time.perf_counter() - started
    assert fast < copies
