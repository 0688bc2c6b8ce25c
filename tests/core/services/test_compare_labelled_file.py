"""``models compare --data FILE``: the rows of a labelled file the quality gate leaves out are
counted in what the comparison says it was made on, and a file with none left is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from store_helpers import Lending  # noqa: F401 - fixtures come from the plugin

from finflow_core.errors import BatchRejected
from finflow_core.lending.synthetic import generate_applications
from finflow_core.services.access import Principal

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

ANALYST = Principal(None, "ann.analyst", frozenset({"analyst"}))


def labelled(path: Path, rows: int, blank_outcomes: int) -> Path:
    df = generate_applications(rows, seed=23).astype({"default": object})
    df.loc[: blank_outcomes - 1, "default"] = ""  # outcome not known yet
    df.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path


def test_the_rows_left_out_of_a_labelled_file_are_counted_by_rule(ff_sqlite: Lending,
                                                                   tmp_path: Path) -> None:
    models = ff_sqlite.wb(ANALYST).models
    result = models.compare(ff_sqlite.version, data=labelled(tmp_path / "holdout.csv", 400, 25))
    assert result.rows == 375
    assert result.source == ("the 375 applications with outcomes in holdout.csv (25 of its 400 "
                             "rows quarantined and left out: not_null ×25)")
    whole = models.compare(ff_sqlite.version, data=labelled(tmp_path / "whole.csv", 400, 0))
    assert whole.source == "the 400 applications with outcomes in whole.csv"


def test_a_labelled_file_with_no_row_left_is_refused_naming_the_rules(ff_sqlite: Lending,
                                                                      tmp_path: Path) -> None:
    models = ff_sqlite.wb(ANALYST).models
    with pytest.raises(BatchRejected) as err:  # was: ValueError from LightGBM, exit 1
        models.compare(ff_sqlite.version, data=labelled(tmp_path / "pending.csv", 40, 40))
    assert err.value.exit_code == 4 and err.value.reason == "no_valid_rows"
    assert str(err.value) == ("pending.csv: none of its 40 rows can be compared on: all were "
                              "quarantined (not_null ×40); a labelled file needs the columns the "
                              "model reads and each row's outcome")
