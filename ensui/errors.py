"""Errors a user can act on. The CLI turns each into one message and an exit code."""

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


class EnsuiError(Exception):
    """A problem with the user's input or files: printed as one line, no traceback."""

    exit_code = EXIT_INVALID


class SpecError(EnsuiError):
    """An experiment spec that cannot be used; the message names the file, line and field."""


class UnknownIdError(EnsuiError):
    """A model or subnetwork id that is not in the catalog."""
