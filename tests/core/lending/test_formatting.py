"""The formatting layer: every edge a screen or report has shown wrongly, and a few more."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np
import pandas as pd
import pytest

from finflow_core import formatting as f
from finflow_core.formatting import Formatter

NAN = float("nan")


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(f)
    assert result.attempted >= 3 and result.failed == 0


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (145_719_012.688, {}, "USD 145,719,013"),  # the weekly expected profit
        (670_586_757.07, {}, "USD 670,586,757"),
        (0, {}, "USD 0"),
        (-0.4, {}, "USD 0"),  # rounds to zero: no minus sign
        (-19_245.4, {}, "-USD 19,245"),  # minus first, so a metric shows a fall
        (1234.565, {"decimals": 2}, "USD 1,234.57"),  # half up on the number as written
        (2.5, {}, "USD 3"),
        (-0.004, {"decimals": 2}, "USD 0.00"),
        (1e18, {}, "USD 1,000,000,000,000,000,000"),
        (Decimal("12.5"), {}, "USD 13"),
        (np.float64(99.5), {}, "USD 100"),
        (None, {}, "–"),
        (NAN, {}, "–"),
        (float("inf"), {}, "–"),
        (pd.NA, {}, "–"),
        ("", {}, "–"),
    ],
)
def test_money(value: object, kwargs: dict, expected: str) -> None:
    assert f.money(value, "USD", **kwargs) == expected


def test_money_without_a_currency_code() -> None:
    assert (f.money(-5, ""), f.money(1234)) == ("-5", "1,234")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "USD 0"),
        (950.4, "USD 950"),
        (999.6, "USD 1.0k"),
        (1234, "USD 1.2k"),
        (-12_345, "-USD 12.3k"),
        (350_000, "USD 350k"),
        (999_960, "USD 1.0m"),
        (1_234_567, "USD 1.2m"),
        (2.5e9, "USD 2.5bn"),
        (7e15, "USD 7,000tn"),
        (-0.2, "USD 0"),
        (None, "–"),
        (NAN, "–"),
    ],
)
def test_compact(value: object, expected: str) -> None:
    assert f.compact(value, "USD") == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (-19_245.0, "-USD 19,245"),
        (1200, "+USD 1,200"),
        (0.3, None),
        (-0.49, None),
        (None, None),
        (NAN, None),
    ],
)
def test_money_delta_is_signed_or_absent(change: object, expected: str | None) -> None:
    assert f.money_delta(change, "USD") == expected


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (f.percent, 0.8, "80.0%"),
        (f.percent, 0, "0.0%"),
        (f.percent, -0.00004, "0.0%"),
        (f.percent, 0.05208333, "5.2%"),
        (f.percent, 12.5, "1,250.0%"),
        (f.percent, None, "–"),
        (f.probability, 0.12345, "12.3%"),
        (f.probability, 0.1235, "12.4%"),
        (f.probability, 0.0004, "<0.1%"),
        (f.probability, 0.0, "0.0%"),
        (f.probability, 0.99999, ">99.9%"),
        (f.probability, 1.0, "100.0%"),
        (f.probability, NAN, "–"),
        (f.rate, 0.1928, "19.28%"),
        (f.rate, 0.07, "7.00%"),
        (f.rate, 0.123456, "12.35%"),
    ],
)
def test_percentages_have_fixed_decimals(fn, value: object, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert fn(value) == expected


@pytest.mark.parametrize(
    ("change", "text", "delta"),
    [
        (0.012, "+1.2 pts", "+1.2 pts"),
        (-0.1, "-10.0 pts", "-10.0 pts"),
        (-0.00004, "0.0 pts", None),  # the what-if's "-0.00 pts" with untouched sliders
        (0.0004, "0.0 pts", None),
        (0.0, "0.0 pts", None),
        (None, "–", None),
        (0.8 - 0.7, "+10.0 pts", "+10.0 pts"),  # 0.10000000000000009 as a float
    ],
)
def test_points(change: object, text: str, delta: str | None) -> None:
    assert f.points(change) == text
    assert f.points_delta(change) == delta


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (1_234_567, "1,234,567"),
        (np.int64(3000), "3,000"),
        (2.5, "3"),
        (-1500, "-1,500"),
        ("1,234", "1,234"),
        (None, "–"),
        (NAN, "–"),
        ("abc", "–"),
    ],
)
def test_count(value: object, expected: str) -> None:
    assert f.count(value) == expected


def test_number_and_as_written() -> None:
    assert (f.number(0.31, 3), f.number(-0.0001, 3), f.number(None)) == ("0.310", "0.000", "–")
    assert f.as_written("3744600.0") == "3,744,600"
    assert f.as_written("0.19280") == "0.1928"
    assert f.as_written("12345.678") == "12,345.68"
    assert f.as_written("west") == "west"
    assert f.as_written("") == "–" and f.as_written(None) == "–"


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        ("2026-12-01T09:41:59.123456+00:00", "UTC", "2026-12-01 09:41"),  # no T, no seconds
        ("2026-12-01T09:41:00Z", "Europe/London", "2026-12-01 09:41"),  # winter: GMT = UTC
        ("2026-07-01T09:41:00Z", "Europe/London", "2026-07-01 10:41"),  # summer: BST
        (datetime(2026, 12, 1, 9, 41), "America/New_York", "2026-12-01 04:41"),  # naive is UTC
        (pd.Timestamp("2026-12-31T23:30:00Z"), "Asia/Tokyo", "2027-01-01 08:30"),  # crosses a year
        (date(2026, 10, 12), "UTC", "2026-10-12"),
        (None, "UTC", "–"),
        (pd.NaT, "UTC", "–"),
        ("not a time", "UTC", "not a time"),
    ],
)
def test_when(value: object, tz: str, expected: str) -> None:
    assert f.when(value, tz) == expected


def test_when_across_the_clock_changes() -> None:
    # spring forward: 01:00 UTC is 02:00 BST, no 01:xx local exists
    assert f.when("2026-03-29T00:59Z", "Europe/London", zone_name=True) == "2026-03-29 00:59 GMT"
    assert f.when("2026-03-29T01:00Z", "Europe/London", zone_name=True) == "2026-03-29 02:00 BST"
    # fall back: the two 01:30s are told apart by the zone name
    first = f.when("2026-10-25T00:30Z", "Europe/London", zone_name=True)
    second = f.when("2026-10-25T01:30Z", "Europe/London", zone_name=True)
    assert (first, second) == ("2026-10-25 01:30 BST", "2026-10-25 01:30 GMT")


def test_day_takes_the_zone_first() -> None:
    assert f.day("2026-12-31T23:30:00+00:00", "Asia/Tokyo") == "2027-01-01"
    assert f.day("2026-10-12") == "2026-10-12"


def test_unknown_zone_fails_at_once() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        Formatter("USD", "Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        f.when("2026-12-01T09:41Z", "../../etc/passwd")


class Colour(StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "–"),
        (NAN, "–"),
        (pd.NaT, "–"),
        (pd.NA, "–"),
        (np.float64("nan"), "–"),
        ("None", "–"),
        ("nan", "–"),
        ("NaT", "–"),
        ("  ", "–"),
        ({}, "–"),
        ([], "–"),
        (True, "yes"),
        (np.bool_(False), "no"),
        (1234, "1,234"),
        (0.19280, "0.1928"),
        (Colour.RED, "red"),
        (np.array([1, 2]), "1, 2"),
        (b"w1.csv", "w1.csv"),
        (
            {"file_name": "w1.csv", "rows": 1200, "revises": None},
            "file name: w1.csv; rows: 1,200; revises: –",
        ),
        ('{"batch": "B-1", "features": {"region": 0.12}}', "batch: B-1; features: (region: 0.12)"),
        ("[1, 2]", "1, 2"),
        ("{not json", "{not json"),
        ("line\nbreak\ttab", "line break tab"),
        ("abc\u202edef\x00", "abcdef"),  # bidi override, NUL
        (datetime(2026, 12, 1, 9, 41, 30, tzinfo=UTC), "2026-12-01 09:41"),
        ("2026-12-02T13:48:52.418851+00:00", "2026-12-02 13:48"),  # a time stamp kept as text
        ({"expires_at": "2026-12-02T13:48:52Z"}, "expires at: 2026-12-02 13:48"),
        ("2026-12-02", "2026-12-02"),
    ],
)
def test_text_never_shows_none_nan_or_json(value: object, expected: str) -> None:
    out = f.text(value)
    assert out == expected
    assert out not in {"None", "nan", "NaT", ""}


def test_text_clips_long_values() -> None:
    assert f.text("x" * 500, limit=10) == "x" * 9 + "…"
    assert f.text("short", limit=10) == "short"


def test_formatter_binds_currency_and_zone() -> None:
    fmt = Formatter("EUR", "Europe/Berlin")
    assert fmt.money(-19_245) == "-EUR 19,245"
    assert fmt.compact(1_234_567) == "EUR 1.2m"
    assert fmt.money_delta(0.2) is None
    assert fmt.when("2026-07-01T07:41:00Z", zone_name=True) == "2026-07-01 09:41 CEST"
    assert fmt.text({"at": datetime(2026, 7, 1, 7, 41, tzinfo=UTC)}) == "at: 2026-07-01 09:41"
    assert (fmt.probability(0.123), fmt.rate(0.1928), fmt.count(1e6)) == (
        "12.3%",
        "19.28%",
        "1,000,000",
    )


def test_app_adapter_keeps_the_old_names_and_uses_the_zone() -> None:
    from finflow_app import fmt as app

    assert app.money(-19_245.0, "USD") == "-USD 19,245"
    assert app.pct(0.0) == "0.0%" and app.pct(0.7, 0) == "70%"
    assert app.cell("3744600.0") == "3,744,600"
    try:
        app.set_time_zone("Europe/London")
        assert app.when("2026-07-01T09:41:07.5+00:00") == "2026-07-01 10:41"
    finally:
        app.set_time_zone("UTC")
    assert app.when("2026-07-01T09:41:07.5+00:00") == "2026-07-01 09:41"
    with pytest.raises(ValueError):
        app.set_time_zone("Nowhere/Land")


@pytest.mark.parametrize(("n", "noun", "said"), [
    (1, "batch", "1 batch"), (3, "batch", "3 batches"), (0, "officer decision", "0 officer decisions"),
    (1, "officer decision", "1 officer decision"), (1204, "box", "1,204 boxes"),
])
def test_a_count_and_its_noun_agree(n: int, noun: str, said: str) -> None:
    assert f.counted(n, noun) == said


def test_an_irregular_plural_is_given() -> None:
    assert f.counted(2, "entry", "entries") == "2 entries" and f.counted(1, "entry", "entries") == "1 entry"
