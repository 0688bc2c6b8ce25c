"""A table dropped by someone who can write the database: ``audit verify`` names it (exit 12)
instead of failing on the first query that needs it."""

from __future__ import annotations

import pytest
from store_helpers import MANAGER, PASSWORD, Lending
from tamper import raw_sql

from finflow_core.cli import main

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def test_a_dropped_table_is_named_by_verify(ff: Lending) -> None:
    assert ff.wb(MANAGER).audit.verify().ok
    raw_sql(ff.store, "DROP TABLE claims")
    raw_sql(ff.store, "DROP TABLE shadow_scores")
    report = ff.wb(MANAGER).audit.verify()
    assert not report.ok and report.chain.problem == "tables_missing"
    assert sorted((f.table, f.problem) for f in report.findings) == [("claims", "missing"),
                                                                      ("shadow_scores", "missing")]
    assert "claims" in report.chain.message and "finflow restore" in report.chain.message


def test_the_cli_says_which_table_is_gone_with_exit_12(
    ffa_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ffa_sqlite.users()
    raw_sql(ffa_sqlite.store, "DROP TABLE web_sessions")
    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["audit", "verify"]) == 12
    captured = capsys.readouterr()
    assert "lacks table(s) web_sessions" in captured.out and "unexpected error" not in captured.err
