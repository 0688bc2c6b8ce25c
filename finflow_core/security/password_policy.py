"""What a password must be: long enough, not the username, and not easy to guess.

Guessability is judged by zxcvbn (frequency lists of leaked passwords, names and words,
plus keyboard walks, repeats, sequences and dates), so ``password12`` and ``aaaaaaaaaa``
are refused while a few unrelated words pass.
"""

from __future__ import annotations

from finflow_core.errors import InvalidInput

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
#: zxcvbn's score (0-4): 3 means about 10^8 guesses or more, "safely unguessable" online.
MIN_STRENGTH = 3
#: zxcvbn's cost grows with length; beyond this only the first part is judged.
_JUDGED_CHARACTERS = 100


class PasswordPolicyError(InvalidInput):
    """The proposed password is too short, too long or too guessable."""


def check_password_policy(password: str, username: str | None = None) -> None:
    """Raise :class:`PasswordPolicyError` unless ``password`` is acceptable for ``username``."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password is too short ({len(password)} characters): use at least "
            f"{MIN_PASSWORD_LENGTH}; a few unrelated words make a good one",
            field="password", min_length=MIN_PASSWORD_LENGTH,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters",
                                  field="password", max_length=MAX_PASSWORD_LENGTH)
    if not password.strip():
        raise PasswordPolicyError("the password cannot be only spaces", field="password")
    if username and password.strip().casefold() == username.casefold():
        raise PasswordPolicyError("the password cannot be the username", field="password")
    from zxcvbn import zxcvbn

    verdict = zxcvbn(password[:_JUDGED_CHARACTERS], user_inputs=[username or "", "finflow"])
    if verdict["score"] < MIN_STRENGTH:
        why = verdict["feedback"].get("warning") or "it follows a common pattern"
        raise PasswordPolicyError(
            f"the password is too easy to guess: {why.rstrip('.')}. Use a longer phrase of "
            "unrelated words", field="password", strength=verdict["score"],
        )
