"""Training tells the truth about its data: the quarantine report, the limit, the bias warning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from store_helpers import Lending, small_config_raw  # noqa: F401 - fixtures come from the plugin

from finflow_core.cli import main
from finflow_core.errors import TrainingError
from finflow_core.lending.synthetic import generate_applications
from finflow_core.services.access import Principal

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

ANALYST = Principal(None, "ann.analyst", frozenset({"analyst"}))


def biased_history(path: Path, rows: int = 1500, spoil: float = 0.2) -> int:
    """A labelled history where the defaulters' credit scores were often not recorded ("n/a"):
    the quality gate quarantines them, and the kept rows default less often."""
    df = generate_applications(rows, seed=14)
    bad = (df["default"] == 1) & (df.index % 2 == 0)
    bad |= df.index < int(rows * spoil / 2)
    df = df.astype({"credit_score": object})
    df.loc[bad, "credit_score"] = "n/a"
    df.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return int(bad.sum())


def test_a_biased_training_file_is_refused_then_trained_with_a_recorded_warning(
    ff_sqlite: Lending, tmp_path: Path,
) -> None:
    history = tmp_path / "history.csv"
    spoiled = biased_history(history)
    models = ff_sqlite.wb(ANALYST).models
    before = ff_sqlite.counts()
    with pytest.raises(TrainingError, match="quarantined, above the limit.*--allow-quarantine"):
        models.train(history, report_dir=tmp_path / "report")
    assert ff_sqlite.counts() == before  # nothing registered
    issues = (tmp_path / "report" / "quarantine_issues.csv").read_text().splitlines()[1:]
    assert len(issues) == spoiled and all(",credit_score,number,n/a," in i for i in issues)

    outcome = models.train(history, allow_over_limit=True)
    card = outcome.card["training_data"]
    assert card["rows_quarantined"] == spoiled and card["over_limit"] is True
    assert card["significant"] is True and card["quarantined_default_rate"] > card["kept_default_rate"]
    assert any("biased subset" in w for w in outcome.warnings)
    stored = ff_sqlite.wb(Principal(None, "mia", frozenset({"manager"}))).models.card(outcome.version)
    assert stored["training_data"]["p_value"] == card["p_value"]


def test_the_cli_prints_the_warnings_and_writes_the_report(
    ff_sqlite: Lending, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from store_helpers import PASSWORD

    ff_sqlite.users()
    history = tmp_path / "history.csv"
    biased_history(history)
    monkeypatch.setenv("FINFLOW_USER", "ann.analyst")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert main(["train", "--data", str(history), "--out", str(tmp_path / "rep")]) == 6
    err = capsys.readouterr().err
    assert "--allow-quarantine" in err and "Traceback" not in err
    assert main(["train", "--data", str(history), "--out", str(tmp_path / "rep"),
                 "--allow-quarantine", "--json"]) == 0
    captured = capsys.readouterr()
    assert "biased subset" in captured.err
    assert json.loads(captured.out)["card"]["training_data"]["over_limit"] is True
    assert (tmp_path / "rep" / "quarantine.csv").exists()
