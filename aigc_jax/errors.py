"""The one exception type a user is meant to read.

Anything the user can fix (a bad config key, a missing data set, an offline download, a corrupt
checkpoint, a diverged run) is raised as a `UserError` whose message names the fix; the CLI prints the
message alone, without a traceback, and exits with `UserError.exit_code`.
"""


class UserError(Exception):
    """A problem in the user's input or environment, with a message that says how to fix it."""

    exit_code = 2


class Interrupted(Exception):  # noqa: N818 -- not an error: a requested stop
    """Training stopped on SIGTERM after writing a checkpoint; the same command resumes."""

    exit_code = 143
