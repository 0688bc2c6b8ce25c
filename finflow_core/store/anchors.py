"""Anchors: the signed head of the audit chain, kept where the database's writer cannot reach.

A keyed chain cannot be rewritten without the key, but its newest entries can still be
deleted and the head moved back: what is left is a valid, shorter chain. An anchor records
the head at a moment (seq, hash, time, number of entries) signed with the installation's
``anchor/v1`` key; ``finflow audit verify`` then requires every anchored entry to be there
with that hash. FinFlow writes one after every stored batch and on demand
(``finflow audit anchor``) into ``audit.anchor_dir``, one file per anchor (0600, in a 0700
folder; files are created, never rewritten, so a write-once store works), and prints a
line a person can paste into a ticket::

    finflow-anchor/1 seq=1234 at=2026-12-01T10:00:00Z entries=1234 key=3f2a... hash=9c1e... mac=...

The MAC is ``HMAC-SHA256(K_anchor, "finflow-anchor/1|seq|hash|at|entries|key")`` (first 32
hex characters). Anyone holding the key can also make one: keep key and anchors apart.

Every entry point (CLI, app) also makes sure a chain has at least one anchor
(:func:`first_anchor`): without it, someone who rewrites the whole log in the old unkeyed
format and clears the head's key fingerprint would have the next write continue it keyed
(``chain_keyed``) and nothing outside the database would remember it was keyed before.
Once that first anchor is written, an ``anchors_started`` entry records its entry and
folder, and verify requires that anchor from then on: emptying the anchor folder, after
which the next start would quietly anchor afresh, is named.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select

from finflow_core.errors import FinFlowError
from finflow_core.lending.config import AuditSection, Config, resolve_audit
from finflow_core.security.keys import InstallationKey
from finflow_core.store.audit_chain import append_audit
from finflow_core.store.engine import Store
from finflow_core.store.tables import audit_head, audit_log, iso_utc, utcnow

VERSION = "finflow-anchor/1"
FILE_PATTERN = "anchor-*.json"
_LINE = re.compile(
    r"finflow-anchor/1\s+seq=(?P<seq>\d+)\s+at=(?P<at>\S+)\s+entries=(?P<entries>\d+)\s+"
    r"key=(?P<key>[0-9a-f]{16})\s+hash=(?P<hash>[0-9a-f]{64})\s+mac=(?P<mac>[0-9a-f]{32})")


class AnchorError(FinFlowError):
    """An anchor cannot be written or read."""

    exit_code = 12


class AnchorNotWritten(AnchorError):
    """The anchor folder or file cannot be written (missing, read-only, not a folder): the
    chain is not broken, so not exit 12, which a scheduler reads as tampering."""

    exit_code = 16


class AnchorDiskFull(AnchorNotWritten):
    exit_code = 15


class AnchorExists(AnchorError):
    """``--out`` names a file that exists (anchors are never overwritten): a bad command line."""

    exit_code = 2


def _not_written(what: str, exc: OSError, advice: str = "", **details: str) -> AnchorNotWritten:
    kind = AnchorDiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else AnchorNotWritten
    return kind(f"{what}: {exc.strerror or exc}{advice}", **details)


def check_anchor_out(path: Path) -> None:
    """Refuse an ``--out`` anchor file before anything is written: it exists already, or its
    folder does not."""
    if path.exists() or path.is_symlink():
        raise AnchorExists(f"{path} already exists: anchors are never overwritten; choose "
                           "another name", path=str(path))
    if not path.parent.is_dir():
        raise AnchorNotWritten(f"cannot write the audit anchor {path}: the folder {path.parent} "
                               "does not exist", path=str(path))


@dataclass(frozen=True)
class Anchor:
    """The chain's head at one moment, signed."""

    seq: int
    hash: str
    at: str
    entries: int
    key: str  # the fingerprint of the key that signed it
    mac: str

    def line(self) -> str:
        """One line for a ticket or a log: everything needed to check the chain later."""
        return (f"{VERSION} seq={self.seq} at={self.at} entries={self.entries} key={self.key} "
                f"hash={self.hash} mac={self.mac}")

    def signed_by(self, key: InstallationKey) -> bool:
        return self.key == key.fingerprint and hmac.compare_digest(self.mac, _mac(self, key))


def _mac(anchor: Anchor, key: InstallationKey) -> str:
    body = f"{VERSION}|{anchor.seq}|{anchor.hash}|{anchor.at}|{anchor.entries}|{anchor.key}"
    return hmac.new(key.anchor_key, body.encode(), hashlib.sha256).hexdigest()[:32]


def anchor_folder(config: Config) -> Path:
    """Where anchors go: ``audit.anchor_dir`` (``$FINFLOW_ANCHOR_DIR``), outside the data folder."""
    return (config.audit or resolve_audit(AuditSection(), config.paths)).anchor_dir


def first_anchor(store: Store, key: InstallationKey, folder: Path) -> Path | None:
    """Anchor the chain now if ``folder`` holds no anchor signed by ``key`` and the chain has
    entries; the file written, or None when there was nothing to do."""
    if folder.is_dir():
        for path in sorted(folder.glob(FILE_PATTERN), reverse=True):  # the newest first
            found = _read_file(path) if path.is_file() else None
            if isinstance(found, Anchor) and found.signed_by(key):
                return None
    made = make_anchor(store, key)
    if made.seq == 0:
        return None
    path = write_anchor(made, folder)
    with store.begin() as conn:  # after the file exists: a folder that cannot be written records nothing
        append_audit(conn, "system", "anchors_started", "anchors", "audit",
                     {"first_anchor_seq": made.seq, "folder": str(folder)})
    return path


def make_anchor(store: Store, key: InstallationKey) -> Anchor:
    """Sign the chain's current head (read in one snapshot with the number of entries)."""
    with store.connect(snapshot=True) as conn:
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)).first()
        entries = int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
    if head is None:
        raise AnchorError("the audit_head row is missing: run `finflow audit verify`")
    at = iso_utc(utcnow())[:19] + "Z"
    unsigned = Anchor(int(head.seq), str(head.hash), at, entries, key.fingerprint, "")
    return Anchor(**{**asdict(unsigned), "mac": _mac(unsigned, key)})


def write_anchor(anchor: Anchor, folder: Path) -> Path:
    """Write ``anchor`` as a new file in ``folder`` (0600; the folder made 0700); an anchor of
    the same entry already there is kept and returned instead."""
    if folder.exists() and not folder.is_dir():
        raise AnchorNotWritten(f"cannot write the audit anchor into {folder}: it is a file, not a "
                               "folder. Check audit.anchor_dir, then run `finflow audit anchor`",
                               folder=str(folder))
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True, mode=0o700)
            folder.chmod(0o700)
        for existing in folder.glob(f"anchor-{anchor.seq:010d}-*.json"):
            found = _read_file(existing)
            if isinstance(found, Anchor) and found.hash == anchor.hash:
                return existing
        stem = f"anchor-{anchor.seq:010d}-{anchor.at.replace(':', '')}"
        for n in range(1, 100):  # another anchor of the same entry and second: never overwritten
            path = folder / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
            if not path.exists():
                break
        return write_anchor_file(anchor, path)
    except OSError as exc:
        raise _not_written(f"cannot write the audit anchor into {folder}", exc,
                           ". Check audit.anchor_dir, then run `finflow audit anchor`",
                           folder=str(folder)) from None


def write_anchor_file(anchor: Anchor, path: Path) -> Path:
    """Write one anchor to ``path`` (created, never overwritten; mode 0600)."""
    text = json.dumps({"format": VERSION, **asdict(anchor)}, indent=2, sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AnchorExists(f"{path} already exists: anchors are never overwritten; choose "
                           "another name", path=str(path)) from None
    except OSError as exc:
        raise _not_written(f"cannot write the audit anchor {path}", exc, path=str(path)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def parse_anchor(text: str) -> Anchor:
    """An anchor from its file's JSON or its one-line form (as pasted into a ticket)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            raw = json.loads(text)
            if raw.get("format") != VERSION:
                raise ValueError(f"format {raw.get('format')!r}")
            return Anchor(int(raw["seq"]), str(raw["hash"]), str(raw["at"]),
                          int(raw["entries"]), str(raw["key"]), str(raw["mac"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AnchorError(f"not a FinFlow anchor ({exc})") from None
    found = _LINE.search(text)
    if found is None:
        raise AnchorError("not a FinFlow anchor: expected a line starting 'finflow-anchor/1 seq='")
    g = found.groupdict()
    return Anchor(int(g["seq"]), g["hash"], g["at"], int(g["entries"]), g["key"], g["mac"])


def _read_file(path: Path) -> Anchor | str:
    try:
        return parse_anchor(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable ({exc})"
    except AnchorError as exc:
        return exc.message


def read_anchors(folder: Path) -> list[tuple[str, Anchor | str]]:
    """Every anchor file in ``folder`` (not in subfolders) by name: an Anchor or why not."""
    if not folder.is_dir():
        return []
    return [(p.name, _read_file(p)) for p in sorted(folder.glob(FILE_PATTERN)) if p.is_file()]
