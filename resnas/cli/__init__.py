"""`resnas` command line: parse (`parser`), call the library (`commands`), print (`text`). `--json` prints one JSON
object on stdout, nothing else.

User errors end in one line on stderr and exit code 2; a training failure exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import json
import sys

from ..errors import UserError
from ..train import TrainingFailed
from .commands import COMMANDS
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(COMMANDS).parse_args(argv)
        out = args.func(args)
    except UserError as e:
        print(f"resnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resnas: interrupted; finished trials and checkpoints are kept", file=sys.stderr)
        return 130
    except TrainingFailed as e:
        print(f"resnas: training failed: {e}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(out, default=str))
    return 0

