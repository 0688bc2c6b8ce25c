"""The value types a FinFlow config is declared with, and the error its checks raise.

Scalars are strict: a quoted number is text, not a number, and ``yes`` is text, not a
boolean (the loader reads YAML 1.2, where only ``true``/``false`` are booleans). A check
that fails raises :class:`Problem`, which carries where below the checked object the
mistake is, so the message can name the key as the lender wrote it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BeforeValidator,
    ConfigDict,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
)

#: Every declared section refuses settings it does not know.
DECLARED = ConfigDict(extra="forbid")

Text = StrictStr
Whole = StrictInt
Flag = StrictBool
#: an int is a number too; a quoted "0.5" is not; .inf / 1e400 (no limit, no cost) is refused
Number = Annotated[float, Strict(), AllowInfNan(False)]


class Problem(ValueError):
    """A config check failed; ``at`` is the path below the checked object (keys, indexes)."""

    def __init__(self, message: str, at: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


def _fraction(v: float) -> float:
    if not 0 <= v <= 1:
        raise Problem(f"must be between 0 and 1, got {v:g}")
    return v


def _positive(v: float) -> float:
    if not v > 0:
        raise Problem(f"must be above 0, got {v:g}")
    return v


def _not_negative(v: float) -> float:
    if v < 0:
        raise Problem(f"cannot be negative, got {v:g}")
    return v


Fraction = Annotated[Number, AfterValidator(_fraction)]
Positive = Annotated[Number, AfterValidator(_positive)]
NotNegative = Annotated[Number, AfterValidator(_not_negative)]


def _category_text(v: Any) -> Any:
    """Category values are text; a value YAML still reads as something else is refused."""
    if isinstance(v, bool) or v is None:
        text = getattr(v, "yaml_text", None) or {True: "true", False: "false", None: "null"}[v]
        kind = "null (no value)" if v is None else "a boolean"
        raise Problem(f"category {text} was read as {kind}: write it in quotes (\"{text}\") "
                      "if it is a code of the file")
    if isinstance(v, float):
        text = getattr(v, "yaml_text", repr(v))
        raise Problem(f"category {text} was read as a number: write it in quotes (\"{text}\")")
    if isinstance(v, int):  # 01 and 1 are different codes: keep the text as written
        return getattr(v, "yaml_text", str(v))
    return v


Category = Annotated[StrictStr, BeforeValidator(_category_text)]


def _one_or_many(v: Any) -> Any:
    return (v,) if isinstance(v, str) else v


Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_one_or_many)]


def _code_pairs(v: Any) -> Any:
    """``{CHGOFF: 1, "P I F": 0}`` as pairs (the spec stays hashable); order as written."""
    if isinstance(v, Mapping):
        return tuple(v.items())
    if isinstance(v, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in v):
        return v  # pairs already (a spec copied with dataclasses.replace)
    raise Problem(f"must be a mapping of codes to numbers ({{CHGOFF: 1, \"P I F\": 0}}), got {v!r}")


#: Texts a number column may hold instead of a number, each read as the number given.
Codes = Annotated[tuple[tuple[Category, Number], ...], BeforeValidator(_code_pairs)]


def _wording(v: Any) -> Any:
    """A reason for a category column: one statement for every code, or ``{code: statement}``
    (kept as pairs, in the order written, so the spec stays hashable)."""
    if isinstance(v, Mapping):
        return tuple(v.items())
    if isinstance(v, str) or isinstance(v, tuple) and all(
            isinstance(p, tuple) and len(p) == 2 for p in v):
        return v
    raise Problem("must be one statement for every category, or a statement per category "
                  f"({{\"2\": The business is new}}), got {v!r}")


#: ``reason_category``: a statement for every code, or code by code.
Wording = Annotated[Text | tuple[tuple[Category, Text], ...], BeforeValidator(_wording)]


class FrozenParams(Mapping[str, Any]):
    """An immutable, hashable, picklable mapping of estimator parameters."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", {str(k): _freeze(v) for k, v in (items or {}).items()})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenParams is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenParams, (self.to_dict(),))

    def __repr__(self) -> str:
        return f"FrozenParams({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists again, as an estimator expects them."""
        return {k: _thaw(v) for k, v in self._items.items()}


def _freeze(v: Any) -> Any:
    if isinstance(v, Mapping):
        return FrozenParams(v)
    if isinstance(v, list | tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)  # drop the loader's int subclass
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, FrozenParams):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def _params(v: Any) -> Any:
    if isinstance(v, FrozenParams):
        return v
    if not isinstance(v, Mapping):
        raise Problem(f"must be a mapping of estimator parameters, got {v!r}")
    return FrozenParams(v)


Params = Annotated[Any, BeforeValidator(_params)]
