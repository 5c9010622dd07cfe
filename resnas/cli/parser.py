"""The `resnas` argument parser. Every command is listed (so `resnas --help` and a mistyped name show them all), but
only the command on the command line gets its flags, from its own module (`commands.load`): building the others
would import what they need."""

from __future__ import annotations

import argparse

from .. import __version__
from ..errors import UserError
from .commands import COMMANDS, load


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        raise UserError(f"{self.prog}: {message}")


def command_named(argv: list[str]) -> str | None:
    """The command `argv` runs: its first word that is not an option (the top level has no option taking a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str]) -> Parser:
    """The parser for `argv`: each command's help line, and the flags (and `func`) of the command it names."""
    p = Parser(prog="resnas", description="Search and prune residual networks.")
    p.add_argument("--version", action="version", version=f"resnas {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    wanted = command_named(argv)
    for name, (_, help_line) in COMMANDS.items():
        s = sub.add_parser(name, help=help_line)
        if name == wanted:
            command = load(name)
            command.arguments(s)
            s.set_defaults(func=command.run)
    return p
