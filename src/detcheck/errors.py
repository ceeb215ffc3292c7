"""One exception family; the CLI maps each to an exit code and a one-line message."""

from __future__ import annotations


class DetcheckError(Exception):
    """A failure the user can act on. `exit_code` is what the CLI exits with."""

    exit_code = 2


class UsageError(DetcheckError):
    """Bad options or arguments."""


class DataError(DetcheckError):
    """A file or directory that is not a readable detcheck run."""


class EndpointError(DetcheckError):
    """The endpoint refused the measurement in a way retrying cannot fix."""

    exit_code = 3


class Refused(EndpointError):
    """The endpoint answered a request with a 4xx that asking again cannot fix (a bad key, a
    wrong URL, a model it does not serve). `status`, `code` and `detail` (its message) let the
    command that started the run say what was probably meant (and the audit tell a refusal of
    the one parameter an arm changes from a failure)."""

    def __init__(self, message: str, status: int, code: str | None = None, detail: str = ""):
        super().__init__(message)
        self.status, self.code, self.detail = status, code, detail
        self.nothing_kept = False  # set when the run it stopped was discarded, being empty
        # what was probably meant (option -> value) and the words before the fix, when known
        self.fix: dict | None = None
        self.diagnosis, self.several = message, False


class Interrupted(DetcheckError):
    """The run was stopped by Ctrl-C or SIGTERM; what arrived is on disk."""

    exit_code = 130


class StorageError(DetcheckError):
    """A run cannot be written where it was asked to go (not a directory, read-only, disk full)."""


class RunBusy(UsageError):
    """Another process is writing the run: two writers would corrupt it."""


def reworded(exc: DetcheckError, message: str) -> DetcheckError:
    """`exc` saying `message` instead: its type, exit code and fields (a Refused's status and
    detail) kept, for a command that names where it happened (an audit's arm, a verify side)."""
    exc.args = (message,)
    return exc
