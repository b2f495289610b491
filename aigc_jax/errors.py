"""The one exception type a user is meant to read.

Anything the user can fix (a bad config key, a missing data set, an offline download, a corrupt
checkpoint, a diverged run) is raised as a `UserError` whose message names the fix; the CLI prints the
message alone, without a traceback, and exits with `UserError.exit_code`.
"""

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem in the user's input or environment, with a message that says how to fix it."""

    exit_code = 2


class Interrupted(Exception):  # noqa: N818 -- not an error: a requested stop
    """Training stopped on SIGTERM or Ctrl-C after writing a checkpoint; the same command resumes. Its exit
    code is the shell's for that signal (128 + its number: 143, 130)."""

    def __init__(self, message: str, exit_code: int = 143):
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_of(main: Callable[[], None]) -> int:
    """Runs a command's `main`: a `UserError` or `Interrupted` ends in its one-line message (no
    traceback) and its exit code, Ctrl-C in 130, success in 0. The CLI and the experiment scripts."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    # training handles its own first Ctrl-C (a checkpoint, then Interrupted); this is any other
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    return 0
