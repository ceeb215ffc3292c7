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
    """The endpoint refused the measurement in a way retrying cannot fix. `status` is the HTTP
    status that said so, and `server_message` the server's own words, when there were any (the
    audit tells a refusal of one parameter from a failure by them)."""

    exit_code = 3

    def __init__(self, message: str, *, status: int | None = None, server_message: str = ""):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class Interrupted(DetcheckError):
    """The run was stopped by Ctrl-C or SIGTERM; what arrived is on disk."""

    exit_code = 130


class StorageError(DetcheckError):
    """A run cannot be written where it was asked to go (not a directory, read-only, disk full)."""


class RunBusy(UsageError):
    """Another process is writing the run: two writers would corrupt it."""
