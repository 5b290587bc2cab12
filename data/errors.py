"""Errors a user can act on.

Every stage raises a subclass of :class:`TwostageError` for problems in what the user gave
it: :class:`DataError` for files and data sources, :class:`ConfigError` for settings, and
the serving errors for requests and exports. The command line prints these as one
sentence with exit code 2, never a traceback.
"""


class TwostageError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ConfigError(TwostageError):
    """A setting (a command-line flag, a config field) is out of range or unknown."""


class DataError(TwostageError):
    """A data file or data source is missing, malformed or unusable."""

    def __init__(self, message: str, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
