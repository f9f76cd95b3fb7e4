class VitsslError(Exception):
    """A user-facing error: its message names the problem and the fix; the CLI prints it as one line, without a
    traceback, and exits with status 2."""

    exit_code = 2


class Interrupted(VitsslError):
    """The run stopped on a signal after saving a checkpoint; the CLI exits with 128 + the signal number (143 for
    SIGTERM, 130 for SIGINT), as a process ended by that signal would, so schedulers and torchrun see it as such."""

    def __init__(self, message: str, signum: int, report: bool = True) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
        self.report = report  # False on the other processes of a distributed run: rank 0 says it once
