"""The files resnas ships beside its code: search spaces (`search_spaces/` in the repository) and study configs
(`studies/`). They are installed as the packages `resnas.shipped.spaces` and `resnas.shipped.studies` (see
pyproject.toml) and found through importlib.resources, the same way from a checkout, an editable install or a wheel.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import UserError

KINDS = ("spaces", "studies")


def folder(kind: str) -> Path:
    """The folder of shipped `kind` files ("spaces" or "studies"). resnas is installed as files on disk (as pip
    does), so the resource folder is a real path that TOML readers and error messages can name."""
    assert kind in KINDS, kind
    return Path(str(files(f"resnas.shipped.{kind}")))



def names(kind: str) -> list[str]:
    return sorted(p.stem for p in folder(kind).glob("*.toml"))


def resolve_file(name_or_path: str, kind: str, what: str, error: type[UserError]) -> Path:
    """The path of a user's .toml file, or of the `kind` file shipped under that name; `error` lists what ships."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise error(f"{what} {path}: no such file")
        return path
    candidate = folder(kind) / f"{name_or_path}.toml"
    if not candidate.is_file():
        noun = what.removesuffix(" file")
        raise error(f"unknown {noun} {name_or_path!r}; shipped: {', '.join(names(kind))} (or give the path of a "
                    f".toml {noun} file)")
    return candidate


def read_toml(path: Path, what: str, error: type[UserError]) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise error(f"{what} {path}: not valid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{what} {path}: cannot read it ({e})") from None
