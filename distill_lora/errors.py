"""UserError: a problem the user can fix, printed by the CLI as one line, never a traceback; and the exit codes.

Exit codes of every command (docs/scripting.md lists them for scripts):
    0    success
    1    failure: a file could not be read or written (disk full, permissions)
    2    bad config or input (a UserError): fix what the line says and run again
    3    the run folder is locked by another process (RunFolderBusy): wait, or use another --output-dir
    130  interrupted by Ctrl+C (SIGINT); 143 stopped by SIGTERM: finished stages are kept and an unfinished
         one resumes from its last checkpoint when the same command runs again
"""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_BUSY = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class UserError(Exception):
    """A problem the user can fix: printed as one line, never as a traceback."""


class RunFolderBusy(UserError):
    """Another process holds the run folder's lock."""


class Terminated(BaseException):
    """SIGTERM arrived outside training (where the trainer checkpoints first): stop as Ctrl+C would, with 143."""
