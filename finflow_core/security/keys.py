"""This installation's secret key: where it lives, how it is made, and the keys derived from it.

The key keys the audit chain, seals stored rows, signs anchors and model cards. It is never
written into the database and never lives in the data folder, so someone who can write (or
copies) the database cannot recompute any of those. Where it comes from, first match wins:

1. ``$FINFLOW_SECRET_KEY`` (its text is the key: for tests and secret-injecting platforms);
2. the file named by ``$FINFLOW_KEY_FILE``;
3. the config's ``audit.key_file`` (default ``.secrets/installation.key`` under FINFLOW_HOME).

A missing file is created on first use: 32 random bytes as hex, mode 0600, in a folder made
0700. A key file that other users may read is refused (like ssh refuses such a private key).
An installation from before keys moved out of the data folder has ``data/.finflow_secret``:
it is moved to the key file on first use, so existing model cards keep their signatures.

Each use gets its own derived key (``HMAC-SHA256(secret, "finflow/<purpose>")``), so a value
made for one purpose can never pass for another. Model cards are signed with the secret
itself, as they always were (their payload is a JSON object, never ``finflow/...``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from finflow_core.errors import FinFlowError

if TYPE_CHECKING:
    from finflow_core.lending.config import Config

ENV_SECRET = "FINFLOW_SECRET_KEY"
ENV_KEY_FILE = "FINFLOW_KEY_FILE"
DEFAULT_KEY_FILE = Path(".secrets") / "installation.key"
LEGACY_KEY_FILE = ".finflow_secret"  # in the data folder, before the key moved out
MIN_KEY_CHARS = 16

CHAIN = "audit-chain/v1"
ROW_SEAL = "row-seal/v1"
ANCHOR = "anchor/v1"
FINGERPRINT = "fingerprint/v1"


class InstallationKeyError(FinFlowError):
    """The installation key cannot be read, made, or trusted."""

    exit_code = 3


@dataclass(frozen=True)
class InstallationKey:
    """The secret and where it came from; ``repr`` never shows the secret."""

    secret: bytes = field(repr=False)
    source: str

    def derive(self, purpose: str) -> bytes:
        """The key for one purpose (32 bytes)."""
        return hmac.new(self.secret, f"finflow/{purpose}".encode(), hashlib.sha256).digest()

    @cached_property
    def chain_key(self) -> bytes:
        return self.derive(CHAIN)

    @cached_property
    def seal_key(self) -> bytes:
        return self.derive(ROW_SEAL)

    @cached_property
    def anchor_key(self) -> bytes:
        return self.derive(ANCHOR)

    @cached_property
    def fingerprint(self) -> str:
        """16 hex characters that name the key without revealing it (shown in messages)."""
        return self.derive(FINGERPRINT).hex()[:16]


def key_path(config: Config | None = None) -> Path:
    """Where the key file is (or will be made): ``$FINFLOW_KEY_FILE``, else the config's."""
    env = os.environ.get(ENV_KEY_FILE)
    if env:
        return Path(env).expanduser()
    if config is not None and config.audit is not None:
        return config.audit.key_file
    from finflow_core.lending.config import finflow_home

    return finflow_home() / DEFAULT_KEY_FILE


def has_key(config: Config | None = None) -> bool:
    """Whether this installation already has a key (a file, or ``$FINFLOW_SECRET_KEY``)."""
    return bool(os.environ.get(ENV_SECRET)) or key_path(config).is_file()


_CACHE: dict[tuple[str, int, int, int], InstallationKey] = {}


def load_key(config: Config | None = None, *, keyed_with: str | None = None) -> InstallationKey:
    """This installation's key, made on first use (see the module docstring).

    ``keyed_with``: the fingerprint the store's audit chain is keyed with already. Then a
    missing key file is lost, not new: no fresh key is made in its place (one was, and the
    next message named it as "this installation's key", hiding the loss)."""
    env = os.environ.get(ENV_SECRET)
    if env:
        return _checked(InstallationKey(env.encode(), f"${ENV_SECRET}"))
    path = key_path(config)
    if path.exists() and not path.is_file():
        raise InstallationKeyError(
            f"the installation key {path} is a folder or device, not a key file: point "
            f"audit.key_file or {ENV_KEY_FILE} at the key file", path=str(path))
    if not path.is_file():
        legacy = None if config is None else config.paths.data_dir / LEGACY_KEY_FILE
        legacy = legacy if legacy is not None and legacy.is_file() else None
        if legacy is None and keyed_with:
            raise InstallationKeyError(
                f"the installation key {path} is missing, but this installation's audit chain "
                f"is keyed with key {keyed_with}: restore the key file from its backup (kept "
                f"apart from the database, docs/SECURITY.md), or point audit.key_file or "
                f"{ENV_KEY_FILE} at it. Nothing was written.", path=str(path), recorded=keyed_with)
        _create(path, legacy)
    try:
        info = path.stat()
    except OSError as exc:
        raise _cannot(path, "read", exc) from None
    stamp = (str(path), info.st_ino, info.st_mtime_ns, info.st_mode)
    cached = _CACHE.get(stamp)
    if cached is not None:
        return cached
    if os.name == "posix" and info.st_mode & 0o077:
        raise InstallationKeyError(
            f"the installation key {path} may be read by other users (mode "
            f"{stat.filemode(info.st_mode)}): run `chmod 600 {path}` and keep its folder 0700",
            path=str(path))
    key = _checked(InstallationKey(_read(path), str(path)))
    _CACHE[stamp] = key
    return key


def _checked(key: InstallationKey) -> InstallationKey:
    if len(key.secret) < MIN_KEY_CHARS:
        raise InstallationKeyError(
            f"the installation key from {key.source} is shorter than {MIN_KEY_CHARS} characters: "
            "use a long random value (a fresh key file is made when none exists)",
            source=key.source)
    return key


def _read(path: Path) -> bytes:
    """The key file's text; waits briefly for a process that is writing it right now."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _cannot(path, "read", exc) from None
        if text or time.monotonic() > deadline:
            return text.encode()
        time.sleep(0.02)


def _create(path: Path, legacy: Path | None) -> None:
    """Write a new key file 0600 in a 0700 folder (or move the legacy key there)."""
    folder = path.parent
    try:
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o700)
            folder.chmod(0o700)  # mkdir's mode is cut by the umask
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: read that one
    except OSError as exc:
        raise _cannot(path, "create", exc) from None
    text = _read(legacy).decode() if legacy is not None else secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if legacy is not None:
        legacy.unlink(missing_ok=True)  # the key no longer sits beside the database


def _cannot(path: Path, what: str, exc: BaseException) -> InstallationKeyError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return InstallationKeyError(
        f"cannot {what} the installation key {path}: {reason}. Set audit.key_file in the "
        f"config or {ENV_KEY_FILE} to a file this user can {what}, outside the data folder",
        path=str(path))
