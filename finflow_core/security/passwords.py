"""Password hashing: salted scrypt in a self-describing string, compared in constant time.

``scrypt$N$r$p$<salt b64>$<hash b64>``. Unknown usernames are checked against a dummy hash
so that a sign-in costs the same whether or not the name exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache

# scrypt cost: about 50 ms and 16 MiB per hash. Never lower these in production code.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32


def hash_password(password: str) -> str:
    """A salted scrypt hash in a self-describing string."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against :func:`hash_password` output.

    A malformed or implausible hash string verifies as False rather than raising.
    """
    parsed = _parse_hash(encoded)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def needs_rehash(encoded: str) -> bool:
    """Whether a stored hash uses other parameters than today's (rehash on next sign-in)."""
    parsed = _parse_hash(encoded)
    return parsed is None or (parsed[0], parsed[1], parsed[2]) != (SCRYPT_N, SCRYPT_R, SCRYPT_P)


def check_against_dummy(password: str) -> None:
    """Spend the work of one verification, for a username that does not exist."""
    verify_password(password, _dummy_hash())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 2**20
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=maxmem)


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    plausible = (
        2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
        and len(salt) >= 8 and 16 <= len(expected) <= 64
    )
    return (n, r, p, salt, expected) if plausible else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
