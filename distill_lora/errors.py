"""UserError: a problem the user can fix, printed by the CLI as one line (exit code 2), never a traceback."""


class UserError(Exception):
    """A problem the user can fix: printed as one line, never as a traceback."""
