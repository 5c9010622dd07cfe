"""`resnas` command line: parse (`parser`), call the library (one module per command, `commands`), print (`text`).
`--json` prints one JSON object on stdout, nothing else. Only the command being run is imported (see `commands`).

User errors end in one line on stderr and exit code 2; a training failure or a full disk exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import errno
import json
import sys

from ..errors import TrainingFailed, UserError
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv).parse_args(argv)
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
    except Exception as e:
        if (full := _disk_full(e)) is None:
            raise
        print(f"resnas: error: out of disk space: {full}; free some and run the same command again (finished "
              "trials and checkpoints are kept)", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(out, default=str))
    return 0


def _disk_full(e: BaseException | None) -> str | None:
    """The first line of a "no space left" error among the causes of `e` (Optuna wraps SQLite's in its own), if any."""
    while e is not None:
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "database or disk is full" in str(e):
            return str(e).splitlines()[0][:200]
        e = e.__cause__ or e.__context__
    return None
