"""The files resnas ships beside its code: search spaces (`search_spaces/` in the repository) and study configs
(`studies/`). They are installed as the packages `resnas.shipped.spaces` and `resnas.shipped.studies` (see
pyproject.toml) and found through importlib.resources, the same way from a checkout, an editable install or a wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

KINDS = ("spaces", "studies")


def folder(kind: str) -> Path:
    """The folder of shipped `kind` files ("spaces" or "studies"). resnas is installed as files on disk (as pip
    does), so the resource folder is a real path that TOML readers and error messages can name."""
    assert kind in KINDS, kind
    return Path(str(files(f"resnas.shipped.{kind}")))


def names(kind: str) -> list[str]:
    return sorted(p.stem for p in folder(kind).glob("*.toml"))
