"""The one error type a user can cause, and the wrapper every command runs in.

A `UserError` is something the user can fix (a file, a flag, a key): the commands print its
message as one line and exit 2. Ctrl-C exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(ValueError):
    """A problem with what the user gave; the message names it and the fix, in one line."""

    exit_code = 2


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's first line (its type's name when it has no message), at most `limit` characters."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body: a UserError becomes `prog: error: message` and exit 2, Ctrl-C exit 130."""
    try:
        return body()
    except UserError as err:
        kind = "error: " if err.exit_code == 2 else ""  # an interrupted search says how to resume, not "error"
        print(f"{prog}: {kind}{err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
