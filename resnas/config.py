"""The one way from a dict or TOML table to a config dataclass: every key is checked against the dataclass's fields
and every value against the field's type hint, and a mismatch names the source, the key and the type wanted.

Used for TrainConfig, DataConfig and SearchConfig (study configs, stored study identities, checkpoints) and for
ArchSpec fields (space files, spec JSON).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from .errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A table names a key its config does not have, or gives a value of the wrong type."""


def from_table(cls: type[T], table: Any, *, where: str, section: str, error: type[UserError] = ConfigError) -> T:
    """`cls(**table)` with each key and value checked. Every problem, the validation errors of `cls` itself
    included, is raised as `error` with `where` (a file, say) and the key in its one line."""
    if not isinstance(table, dict):
        raise error(f"{where}: [{section}] must be a table of {cls.__name__} fields, got {type(table).__name__}")
    kwargs = checked_fields(cls, table, where=where, section=section, error=error)
    try:
        return cls(**kwargs)
    except UserError as e:
        raise error(f"{where}: [{section}] {e}") from None


def checked_fields(cls: type, table: dict[str, Any], *, where: str, section: str,
                   error: type[UserError] = ConfigError) -> dict[str, Any]:
    """The table's values converted to `cls`'s field types (TOML/JSON lists become tuples, ints become floats)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for key, value in table.items():
        if key not in names:
            raise error(f"{where}: unknown key {section}.{key}; allowed: {', '.join(names)}")
        ok, converted = convert(value, hints[key])
        if not ok:
            raise error(f"{where}: {section}.{key} = {value!r} should be {type_name(hints[key])}")
        out[key] = converted
    return out


def convert(value: Any, hint: Any) -> tuple[bool, Any]:
    """(does `value` fit the type `hint`, the value converted to it)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for arg in args:
            ok, converted = convert(value, arg)
            if ok:
                return True, converted
        return False, None
    if hint is type(None):
        return value is None, None
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            return False, None
        items = [convert(v, args[0] if args[-1] is Ellipsis or len(args) == 1 else args[i])
                 for i, v in enumerate(value)]
        fixed_length = args[-1] is not Ellipsis and len(args) > 1
        return all(ok for ok, _ in items) and (not fixed_length or len(value) == len(args)), \
            tuple(v for _, v in items)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool), \
            float(value) if isinstance(value, int | float) else None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is Any:
        return True, value
    return isinstance(value, hint), value


def type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if typing.get_origin(hint) is tuple:
        return f"a list of {type_name(args[0])}s"
    if args:
        return " or ".join(type_name(a) for a in args)
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def to_table(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON/TOML data (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
