"""YAML read the way a person means it: the YAML 1.2 core schema, duplicate keys refused.

PyYAML follows YAML 1.1, where ``yes``, ``no``, ``on`` and ``off`` are booleans, ``012`` is
octal, ``1:30`` is a number and ``2026-01-05`` a date; a category list ``[yes, no]`` loads
as ``[True, False]`` and every real "yes" then fails the quality gate. Here only
``true``/``false`` are booleans, only ``null``/``~``/nothing is null, numbers are decimal
(``0o``/``0x`` prefixes), and everything else is text. Numbers remember how they were
written, so a category code ``01`` stays ``"01"``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TAG = "tag:yaml.org,2002:"
#: YAML 1.1 resolvers that YAML 1.2's core schema does not have (or has differently).
_DROPPED = {_TAG + t for t in ("bool", "int", "float", "null", "timestamp", "value")}


class YamlInt(int):
    """An int that remembers its text (``01``), for values that are really codes."""

    yaml_text: str


class YamlFloat(float):
    """A float that remembers its text (``1.50``)."""

    yaml_text: str


class DuplicateKey(yaml.YAMLError):
    """A mapping names the same key twice: YAML would silently keep the last one."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"the key {key!r} is written twice in the same mapping (line {line})")
        self.key = key
        self.line = line


class Yaml12Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the YAML 1.2 core schema and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(_TAG + "bool", _BOOL, list("tTfF"))
Yaml12Loader.add_implicit_resolver(_TAG + "null", _NULL, ["~", "n", "N", ""])
Yaml12Loader.add_implicit_resolver(_TAG + "int", _INT, list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(_TAG + "float", _FLOAT, list("-+0123456789."))


def _int(loader: Yaml12Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        value = YamlInt(int(text[2:], 8))
    elif text.startswith("0x"):
        value = YamlInt(int(text[2:], 16))
    else:
        value = YamlInt(int(text, 10))
    value.yaml_text = text
    return value


def _float(loader: Yaml12Loader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node)
    special = {".inf": "inf", "-.inf": "-inf", ".nan": "nan"}
    value = YamlFloat(special.get(text.lower().lstrip("+"), text))
    value.yaml_text = text
    return value


def _bool(loader: Yaml12Loader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


Yaml12Loader.add_constructor(_TAG + "int", _int)
Yaml12Loader.add_constructor(_TAG + "float", _float)
Yaml12Loader.add_constructor(_TAG + "bool", _bool)


def load_yaml(text: str | bytes) -> Any:
    """Parse YAML text with :class:`Yaml12Loader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
