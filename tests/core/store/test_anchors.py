"""Anchors: the signed chain head, exported after every batch and on demand, kept apart from the
database; verify holds the chain to them. And adopting rows from before sealing."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from store_helpers import ADMIN, ANALYST, MANAGER, PASSWORD, BatchFiles, Lending
from tamper import cut_tail, drop_guards, raw_sql, rewrite_as_unkeyed
from trail import audit_rows

from finflow_core.cli import main
from finflow_core.security.keys import InstallationKey
from finflow_core.store.anchors import (
    make_anchor,
    parse_anchor,
    read_anchors,
    write_anchor,
    write_anchor_file,
)
from finflow_core.store.seals import SealBroken

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

LINE = re.compile(r"^finflow-anchor/1 seq=(\d+) at=\S+Z entries=\d+ key=[0-9a-f]{16} "
                  r"hash=[0-9a-f]{64} mac=[0-9a-f]{32}$")


def anchors_of(ff: Lending) -> Path:
    return ff.home / "anchors"


def signed_in(monkeypatch: pytest.MonkeyPatch, user: str) -> None:
    monkeypatch.setenv("FINFLOW_USER", user)
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)


def test_every_stored_batch_leaves_an_anchor_0600_in_a_0700_folder(
    ff_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    ff = ff_sqlite
    summary = ff.run(batches_dir.a)
    assert summary.warnings == [] or all("anchor" not in w for w in summary.warnings)
    [(name, anchor)] = read_anchors(anchors_of(ff))
    assert not isinstance(anchor, str)
    assert anchor.seq == audit_rows(ff.store)[-1]["seq"]  # the head right after the batch
    path = anchors_of(ff) / name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(anchors_of(ff).stat().st_mode) == 0o700
    ff.run(batches_dir.b)
    assert len(read_anchors(anchors_of(ff))) == 2
    report = ff.wb(MANAGER).audit.verify()
    assert report.ok and "2 anchor(s)" in report.integrity.anchors.message


def test_audit_anchor_prints_a_line_for_a_ticket_and_writes_files_never_twice(
    ff_sqlite: Lending, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ff = ff_sqlite
    ff.users()
    signed_in(monkeypatch, "mia.manager")
    out_file = tmp_path / "ticket-4711.anchor"
    assert main(["audit", "anchor", "--out", str(out_file)]) == 0
    line = capsys.readouterr().out.strip()
    assert LINE.match(line), line
    assert parse_anchor(out_file.read_text()) == parse_anchor(line)
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert main(["audit", "anchor", "--out", str(out_file)]) == 2  # never overwritten
    assert "already exists" in capsys.readouterr().err
    signed_in(monkeypatch, "ann.analyst")
    assert main(["audit", "anchor"]) == 8  # analysts do not handle the trail


def test_a_cut_off_tail_is_named_by_an_anchor_pasted_from_a_ticket(
    ffa_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    ff = ffa_sqlite
    ff.users()
    keep = audit_rows(ff.store)[-1]["seq"]
    ff.wb(ff.gate.authenticate("ada.admin", PASSWORD)).users.set_roles("ann.analyst",
                                                                       ["analyst", "admin"])
    line = ff.wb(ADMIN).audit.anchor().line
    for path in anchors_of(ff).glob("anchor-*.json"):  # the folder, too, is lost
        path.unlink()
    drop_guards(ff.store)
    cut_tail(ff.store, keep)
    signed_in(monkeypatch, "ada.admin")
    assert main(["audit", "verify", "--anchor", line]) == 12
    out = capsys.readouterr().out
    # the admin's sign-in refilled the log up to the anchor's seq: named as rewritten there
    assert re.search(r"audit_log \d+: differs from anchor given on the command line .*rewritten", out)

def test_forged_and_foreign_anchors_are_named(ffa: Lending) -> None:
    ff = ffa
    made = ff.wb(MANAGER).audit.anchor().anchor  # a genuine one, written to the folder
    forged = parse_anchor(made.line().replace(f"seq={made.seq}", f"seq={made.seq + 50}"))
    other = InstallationKey(b"another-installations-key-012345", "elsewhere")
    foreign = make_anchor(ff.store, other)
    folder = anchors_of(ff)
    write_anchor(forged, folder)
    write_anchor_file(foreign, folder / "anchor-0000000001-from-elsewhere.json")
    (folder / "anchor-9999999999-junk.json").write_text("{not json")
    report = ff.wb(MANAGER).audit.verify()
    kinds = {f.problem for f in report.findings if f.table == "anchors"}
    assert kinds == {"forged", "wrong_key", "unreadable"}
    assert "1 anchor(s)" in report.integrity.anchors.message  # the genuine one agrees
    assert not report.ok


def test_an_anchor_that_cannot_be_written_is_not_a_broken_chain(
    ff_sqlite: Lending, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`audit anchor` on a timer: a folder that cannot be written was exit 12 ("audit chain
    broken", read as tampering), an existing --out too, after the folder's anchor was
    written. Now 16 / 2, and an unusable --out is refused before anything is written."""
    ff = ff_sqlite
    ff.users()
    signed_in(monkeypatch, "mia.manager")
    before = sorted(anchors_of(ff).glob("*.json")) if anchors_of(ff).is_dir() else []
    taken = tmp_path / "taken.anchor"
    taken.write_text("a ticket's attachment")
    assert main(["audit", "anchor", "--out", str(taken)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["audit", "anchor", "--out", str(tmp_path / "no" / "such" / "a.json")]) == 16
    assert "does not exist" in capsys.readouterr().err
    now = sorted(anchors_of(ff).glob("*.json")) if anchors_of(ff).is_dir() else []
    assert now == before  # nothing written for a refused --out
    monkeypatch.setenv("FINFLOW_ANCHOR_DIR", str(taken))  # a file where the folder should be
    assert main(["audit", "anchor"]) == 16
    err = capsys.readouterr().err
    assert "it is a file, not a folder" in err and "Traceback" not in err


def test_a_batch_is_stored_even_when_its_anchor_cannot_be_written(
    ff_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    ff = ff_sqlite
    anchors_of(ff).write_text("a file where the folder should be")
    summary = ff.run(batches_dir.a)
    assert ff.batch_ids() == [summary.batch_id]
    assert any("cannot write the audit anchor" in w and "finflow audit anchor" in w
               for w in summary.warnings), summary.warnings


# -- rows from before sealing ------------------------------------------------------------------

def test_rows_from_before_sealing_are_refused_until_an_admin_adopts_them(
    ffa_sqlite: Lending, batches_dir: BatchFiles, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ff = ffa_sqlite
    ff.users()
    case = ff.pending_ids()[0]
    ff.wb(ff.gate.authenticate("oscar.officer", PASSWORD)).review.decide(case, "approve")
    drop_guards(ff.store)  # what the database of an older FinFlow looks like after 0005
    raw_sql(ff.store, *[f"UPDATE {t} SET seal = NULL" for t in
                        ("users", "model_versions", "strategies", "applications", "scores",
                         "decisions")])
    before = ff.wb(MANAGER).audit.verify()
    unsealed = {f.table for f in before.findings if f.problem == "unsealed"}
    # (the officer's decision is not among them: its case_decided entry holds its seal)
    assert unsealed == {"users", "model_versions", "applications", "scores"}
    assert len(before.findings) < 60  # listed per batch, then counted: not one line per row
    assert any("more row(s)" in f.message for f in before.findings)
    with pytest.raises(SealBroken, match="seal-legacy"):
        ff.wb(ANALYST).batches.run(batches_dir.b)
    signed_in(monkeypatch, "ann.analyst")
    assert main(["audit", "seal-legacy"]) == 8  # only an admin adopts
    signed_in(monkeypatch, "ada.admin")
    assert main(["audit", "seal-legacy"]) == 0
    assert "recorded as audit entry" in capsys.readouterr().out
    [adoption] = audit_rows(ff.store, action="legacy_rows_sealed")
    assert adoption["actor"] == "ada.admin" and adoption["details"]["tables"]["applications"] > 0
    after = ff.wb(MANAGER).audit.verify()
    assert after.ok, after.message
    ff.wb(ANALYST).batches.run(batches_dir.b)
    assert main(["audit", "seal-legacy"]) == 0
    assert "nothing to adopt" in capsys.readouterr().out
    raw_sql(ff.store, "UPDATE applications SET amount = 1 WHERE id = :a", a=case)
    assert [f.table for f in ff.wb(MANAGER).audit.verify().findings] == ["applications"]


# -- a log disguised as one from before keying ------------------------------------------------

def test_an_entry_point_anchors_a_chain_that_has_no_anchor_yet(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    ff = ff_sqlite
    ff.users()
    for path in anchors_of(ff).glob("anchor-*.json"):  # as in an installation from before anchors
        path.unlink()
    signed_in(monkeypatch, "mia.manager")
    assert main(["audit", "verify"]) == 0
    assert "1 anchor(s)" in capsys.readouterr().out  # written as the command opened the store
    [(_, first)] = read_anchors(anchors_of(ff))
    assert not isinstance(first, str)
    assert first.seq == audit_rows(ff.store, action="config_loaded")[0]["seq"]  # the head then
    assert main(["audit", "verify"]) == 0
    assert len(read_anchors(anchors_of(ff))) == 1  # one is enough: later starts add none


def test_a_log_rewritten_as_unkeyed_is_named_even_after_the_next_write_continues_it_keyed(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry deleted, the rest re-chained with the old unkeyed formula, the head's key
    fingerprint cleared: the next ordinary write takes it for an older FinFlow's log and
    continues it keyed. The first anchor (written when the CLI started) still names it."""
    ff = ff_sqlite
    ff.users()
    for path in anchors_of(ff).glob("anchor-*.json"):  # only the first anchor is left to check
        path.unlink()
    signed_in(monkeypatch, "mia.manager")
    assert main(["audit", "verify"]) == 0  # any entry point: the chain gets its first anchor
    capsys.readouterr()
    victim = next(r["seq"] for r in audit_rows(ff.store) if r["action"] == "user_created")
    drop_guards(ff.store)
    with ff.store.begin() as conn:
        rewrite_as_unkeyed(conn, drop={victim})
    ff.gate.authenticate("mia.manager", PASSWORD)  # an ordinary write
    assert audit_rows(ff.store, action="chain_keyed"), "the next write continued the chain keyed"
    report = ff.wb(MANAGER).audit.verify()
    assert not report.ok
    assert any(f.table == "audit_log" and f.problem == "rewritten" for f in report.findings), \
        report.message
    assert main(["audit", "verify"]) == 12
    assert "differs from anchor" in capsys.readouterr().out


def test_band_edges_removed_with_their_entry_and_the_head_moved_back_are_named(ff: Lending) -> None:
    """Saving band edges (like user administration and promotions) anchors the chain at once:
    the row and its entry cut off the end leave no row behind to betray them, only the anchor."""
    keep = audit_rows(ff.store)[-1]["seq"]
    ff.wb(MANAGER).models.save_strategy(0.05, 0.40, "tighter")
    [(_, anchor)] = read_anchors(anchors_of(ff))
    assert not isinstance(anchor, str) and anchor.seq == keep + 1
    drop_guards(ff.store)
    raw_sql(ff.store, "DELETE FROM strategies")
    cut_tail(ff.store, keep)
    report = ff.wb(MANAGER).audit.verify()
    assert report.chain.ok  # a valid, shorter chain
    assert [(f.table, f.problem) for f in report.findings] == [("audit_log", "truncated")]
    assert report.findings[0].row == f"entries {keep + 1} to {keep + 1}"


def test_an_emptied_anchor_folder_is_named_even_after_the_next_start_anchors_afresh(
    ff_sqlite: Lending, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whoever can delete the anchors and cut the log's tail would otherwise leave nothing to
    see: the next start wrote a fresh 'first' anchor at the cut head and verify passed."""
    ff = ff_sqlite
    ff.users()
    for path in anchors_of(ff).glob("anchor-*.json"):
        path.unlink()
    signed_in(monkeypatch, "mia.manager")
    assert main(["audit", "verify"]) == 0  # the chain's first anchor, and the entry saying so
    [started] = audit_rows(ff.store, action="anchors_started")
    [(_, first)] = read_anchors(anchors_of(ff))
    assert not isinstance(first, str)
    assert started["seq"] == first.seq + 1
    admin = ff.gate.authenticate("ada.admin", PASSWORD)
    keep = audit_rows(ff.store)[-1]["seq"]
    ff.wb(admin).users.set_roles("ann.analyst", ["analyst", "admin"])  # anchored at once
    for path in anchors_of(ff).glob("anchor-*.json"):  # the attacker: every anchor gone ...
        path.unlink()
    drop_guards(ff.store)
    cut_tail(ff.store, keep)  # ... and the grant cut off the end of the log
    capsys.readouterr()
    assert main(["audit", "verify"]) == 12  # this start anchored the cut head afresh
    out = capsys.readouterr().out
    assert f"anchors entry {first.seq}: audit entry {started['seq']} records that anchors began" in out
    assert "anchors were deleted" in out
    assert len(audit_rows(ff.store, action="anchors_started")) == 2
    # the first anchor put back (a folder moved without its files, then copied in): all agree
    write_anchor(first, anchors_of(ff))
    report = ff.wb(MANAGER).audit.verify()
    assert not any(f.table == "anchors" for f in report.findings), report.message
