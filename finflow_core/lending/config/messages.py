"""One line per config mistake, naming the key as the lender wrote it.

pydantic reports where a value failed as a location tuple and in its own words; a lender
reads ``config error at dataset.columns[4] (credit_scor).min: must be a number, got 'low'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from finflow_core.errors import ConfigError
from finflow_core.lending.config.estimators import did_you_mean
from finflow_core.lending.config.fields import Problem

_NUMBER_TEXT = ("float_type", "float_parsing", "int_type", "int_parsing", "int_from_float")


def config_error(exc: ValidationError, raw: Any) -> ConfigError:
    """The first problem of a failed validation as a :class:`ConfigError` (exit code 3)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc: tuple[Any, ...] = tuple(first["loc"])
    err = (first.get("ctx") or {}).get("error")
    if isinstance(err, Problem):
        loc += err.at
        message = err.message
    else:
        message = _message(first, raw, loc)
    more = len({tuple(e["loc"]) for e in errors}) - 1
    if more > 0:
        message += f" (and {more} more problem{'s' if more > 1 else ''} after this one)"
    return ConfigError(message, key=key_as_written(loc, raw))


def key_as_written(loc: Sequence[Any], raw: Any) -> str:
    """``('dataset', 'columns', 4, 'min')`` -> ``dataset.columns[4] (credit_scor).min``."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list | tuple) and part < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            if isinstance(name, str):
                out += f" ({name})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _message(error: dict[str, Any], raw: Any, loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    value = error.get("input")
    shown = _shown(value)
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed(raw, loc)
        hint = did_you_mean(str(loc[-1]), allowed) if allowed else ""
        return f"unknown setting{hint}" + (f" (allowed: {', '.join(allowed)})" if allowed and not hint
                                            else "")
    if kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return "is required"
    if kind in _NUMBER_TEXT:
        whole = kind.startswith("int")
        what = "a whole number" if whole else "a number"
        if kind == "int_from_float":
            return f"must be a whole number, got {shown}"
        if isinstance(value, str) and _is_number(value):
            return f"must be {what}, got the text {shown}: write it without quotes"
        return f"must be {what}, got {shown}"
    if kind == "finite_number":  # 1e400 reads as inf: no limit, no cost, never what was meant
        return f"must be a finite number, got {shown}"
    if kind == "bool_type":
        hint = " (YAML 1.2: only true and false are booleans)" if isinstance(value, str) else ""
        return f"must be true or false, got {shown}{hint}"
    if kind == "string_type":
        return f"must be text, got {shown}: write it in quotes"
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        hint = did_you_mean(str(value), _literals(expected)) if isinstance(value, str) else ""
        return f"must be one of {', '.join(_literals(expected))}; got {shown}{hint}"
    if kind in ("tuple_type", "list_type", "too_short"):
        return f"must be a list, got {shown}" if kind != "too_short" else "must not be empty"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type",
                "dataclass_args_type"):
        return f"must be a mapping of settings, got {shown}"
    if kind == "value_error":
        return str(error.get("msg", "")).removeprefix("Value error, ")
    return f"{error.get('msg', 'is not valid')}, got {shown}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _literals(expected: str) -> list[str]:
    return [p.strip().strip("'") for p in expected.replace(" or ", ", ").split(",") if p.strip()]


def _allowed(raw: Any, loc: tuple[Any, ...]) -> list[str]:
    """The settings the mapping holding an unknown key may have."""
    from finflow_core.lending.config import schema

    owner = _owner_class(loc[:-1], schema.Document)
    if owner is None:
        return []
    names = getattr(owner, "model_fields", None) or getattr(owner, "__pydantic_fields__", {})
    return list(names)


def _owner_class(loc: tuple[Any, ...], cls: Any) -> Any:
    """Follow field annotations from the document down the location (lists by element)."""
    import typing

    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(cls, "model_fields", None) or getattr(cls, "__pydantic_fields__", {})
        info = fields.get(part)
        if info is None:
            return None
        cls = _declared_in(info.annotation, typing)
        if cls is None:
            return None
    return cls


def _declared_in(annotation: Any, typing: Any) -> Any:
    """The declared class inside ``X``, ``X | None`` or ``tuple[X, ...]``."""
    if hasattr(annotation, "__pydantic_fields__") or hasattr(annotation, "model_fields"):
        return annotation
    for arg in typing.get_args(annotation):
        found = _declared_in(arg, typing)
        if found is not None:
            return found
    return None
