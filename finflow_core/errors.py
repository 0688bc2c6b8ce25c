"""FinFlow's errors: each carries structured data and a message a person can act on."""

from __future__ import annotations

from typing import Any


class FinFlowError(Exception):
    """Base of every error FinFlow raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code: int = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, **self.details}

    def __reduce__(self) -> tuple[Any, ...]:
        # subclasses take keyword arguments: rebuild from the state, not by calling __init__,
        # so an error raised on a Dask worker arrives on the driver as itself
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[FinFlowError], args: tuple[Any, ...], state: dict[str, Any]) -> FinFlowError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(FinFlowError):
    """The configuration is missing, malformed or inconsistent."""

    exit_code = 3

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(f"config error at {key or 'top level'}: {message}", key=key)
        self.key = key


class BatchRejected(FinFlowError):
    """A file that cannot be a batch at all (not CSV, empty, wrong encoding, missing columns)."""

    exit_code = 4

    def __init__(self, message: str, *, reason: str, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class ModelError(FinFlowError):
    """No usable model: none trained yet, or an artifact that cannot be used."""

    exit_code = 5


class ModelIntegrityError(ModelError):
    """A model file whose hash or signature does not match what was registered."""


class TrainingError(FinFlowError):
    """Training data that cannot produce a model (too few rows, one class only...)."""

    exit_code = 6


class AuthError(FinFlowError):
    """Sign-in failed or is temporarily blocked."""

    exit_code = 7


class PermissionDenied(FinFlowError):
    """The caller lacks the role an action needs."""

    exit_code = 8

    def __init__(self, action: str, needed: tuple[str, ...], who: str) -> None:
        roles = " or ".join(needed)
        super().__init__(
            f"{who} may not {action}: it needs the {roles} role", action=action, needed=list(needed),
            user=who,
        )


class NotFound(FinFlowError):
    exit_code = 9


class Conflict(FinFlowError):
    """Someone else changed the record first (a claimed or already decided case)."""

    exit_code = 10


class InvalidInput(FinFlowError):
    """A value a person typed does not meet the rules; ``field`` says which one."""

    exit_code = 2

    def __init__(self, message: str, *, field: str, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class ClusterError(FinFlowError):
    """The Dask cluster cannot be used for this run: a wrong address, no scheduler answering,
    no workers, or workers that cannot read the batch or lack the same FinFlow installation."""

    exit_code = 19

    def __init__(self, message: str, *, reason: str, **details: Any) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class ClusterLost(ClusterError):
    """The cluster started the run but could not finish it (its workers left, or the
    scheduler went away); nothing was stored."""

    exit_code = 20
