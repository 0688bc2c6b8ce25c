"""The weekly HTML report: self-contained, escaped, and carrying the figures it is given."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pandas as pd
import pytest

from finflow_core.lending.config import Config
from finflow_core.lending.report import build_weekly_report
from finflow_core.services.monitoring import ADVICE
from finflow_core.services.portfolio import PortfolioSummary


def summary(groups: list[tuple], hist: list[int] | None = None) -> PortfolioSummary:
    frame = pd.DataFrame(groups, columns=["week_start", "band", "status", "kind", "n", "amount",
                                          "expected_profit"])
    counts = hist or [0] * 20
    histogram = pd.DataFrame({"bin_start": [i / 20 for i in range(20)],
                              "bin_end": [(i + 1) / 20 for i in range(20)], "n": counts})
    return PortfolioSummary(frame, histogram, None, 0.7)


GROUPS = [
    ("2026-10-05", "low", "approved", "auto", 60, 6_000_000.0, 300_000.0),
    ("2026-10-05", "medium", "pending", "", 25, 2_500_000.0, 50_000.0),
    ("2026-10-05", "high", "declined", "auto", 15, 1_500_000.0, 0.0),
    ("2026-10-12", "low", "approved", "auto", 50, 5_000_000.0, 250_000.0),
    ("2026-10-12", "medium", "approved", "manual", 10, 1_000_000.0, 20_000.0),
    ("2026-10-12", "medium", "referred", "manual", 5, 500_000.0, 5_000.0),
    ("2026-10-12", "high", "declined", "auto", 35, 3_500_000.0, 0.0),
]
RUN = {"batch_id": "B-1", "file_name": "week_<b>2</b>.csv", "week_start": "2026-10-12", "status": "alert",
       "score_psi": 0.31, "features": {"credit_score": 0.27, "region": 0.12, "employees": 0.01},
       "counts": {}, "computed_at": "2026-10-13T09:00:00+00:00", "model_version": "v1"}
AT = datetime(2026, 10, 13, 9, 30, tzinfo=UTC)


def test_report_carries_kpis_bands_weeks_and_drift(config: Config) -> None:
    s = summary(GROUPS, hist=[40, 30, 20, 10] + [0] * 14 + [0, 100])
    html = build_weekly_report(s, config, drift_run=RUN, generated_by="manager", generated_at=AT,
                               filters_text="Region in west")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    k = s.kpis()
    assert k["applications"] == 200 and k["approved"] == 120
    # worked out by hand from GROUPS: 160 of 200 in the automatic bands; profit 625,000 on
    # 12,000,000 approved
    assert (k["automation_rate"], k["expected_profit"]) == (0.8, 625_000.0)
    assert k["roi"] == pytest.approx(625_000 / 12_000_000)
    assert "<td>Applications</td><td class=\"v\">200</td>" in html
    assert "<td>Approved</td><td class=\"v\">120</td>" in html
    assert "<td>Declined</td><td class=\"v\">50</td>" in html
    assert "<td>Automation rate</td><td class=\"v\">80.0% (meets target 70.0%)</td>" in html
    assert "<td>Expected profit</td><td class=\"v\">USD 625,000</td>" in html
    assert "<td>Return on amount approved (ROI)</td><td class=\"v\">5.2%</td>" in html
    # bands: counts and shares
    assert "<td>Low risk (auto-approve)</td><td>110</td><td>55.0%</td>" in html
    assert "<td>High risk (auto-decline)</td><td>50</td><td>25.0%</td>" in html
    # both weeks, the referred case counted as pending
    assert "<td>2026-10-05</td><td>100</td>" in html and "<td>2026-10-12</td><td>100</td>" in html
    # histogram rows only for non-empty bins
    assert html.count("&ndash;") == 5
    # drift: status, advice, the features above the watch line only, strongest first
    assert "ALERT" in html and ADVICE["alert"] in html
    assert html.index("Credit score") < html.index("Region</td>")
    assert "Employees</td>" not in html
    assert "generated 2026-10-13 09:30 UTC by manager" in html
    assert "Filters: Region in west" in html


def test_report_is_self_contained_and_escapes_data(config: Config) -> None:
    html = build_weekly_report(summary(GROUPS), config, drift_run=RUN, filters_text="<script>x</script>")
    assert "<script" not in html  # no scripts at all, and data cannot inject one
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "week_&lt;b&gt;2&lt;/b&gt;.csv" in html
    assert not re.search(r"(src|href)\s*=", html)  # no external images, fonts or links
    assert "http" not in html


def test_report_below_target_and_without_drift_or_applications(config: Config) -> None:
    low_auto = [("2026-10-05", "medium", "pending", "", 80, 8e6, 1e5),
                ("2026-10-05", "low", "approved", "auto", 20, 2e6, 1e5)]
    html = build_weekly_report(summary(low_auto), config)
    assert "20.0% (below target 70.0%)" in html
    assert "No drift measurement yet" in html
    empty = build_weekly_report(summary([]), config)
    assert "<td>Applications</td><td class=\"v\">0</td>" in empty
    assert "No applications in the selection." in empty
