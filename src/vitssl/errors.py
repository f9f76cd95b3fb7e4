class VitsslError(Exception):
    """A user-facing error: its message names the problem and the fix; the CLI prints it without a traceback."""
