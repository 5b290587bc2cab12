"""Errors a user can act on.

Every stage raises a subclass of :class:`TwostageError` for problems in what the user gave
it: :class:`DataError` for files and data sources, :class:`ConfigError` for settings, and
the serving errors for requests and exports. The command line prints these as one
sentence with exit code 2, never a traceback.
"""

from typing import Callable, Optional


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


def choose_switch(what: str, value, why_not: Callable[[bool], Optional[str]]) -> Optional[bool]:
    """Resolves an on/off setting whose None means "on where it fits".

    Args:
      what: the setting, as the user names it ("ranking autorec").
      value: the setting: None (automatic), True or False.
      why_not: ``why_not(automatic)`` is why the feature is off, or None where it can run:
        with ``automatic``, by the limits of the default; without, by the hard ones.

    Returns:
      The value chosen for None; None for a value given (kept as it is).

    Raises:
      ConfigError: the setting asks for the feature where it cannot run.
    """
    if value is None:
        return why_not(True) is None
    if value and why_not(False):
        raise ConfigError(f"{what}: {why_not(False)}; leave {what.split()[-1]} unset or false")
    return None


def check_choice(what: str, value, choices) -> None:
    """ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; use one of {', '.join(map(str, choices))}")


def check_at_least(what: str, value, lowest: int = 1) -> None:
    """ConfigError unless the number ``value`` (None: not set, allowed) is at least ``lowest``."""
    if value is not None and value < lowest:
        raise ConfigError(f"{what} must be at least {lowest}, got {value}")


def check_share(what: str, value: float) -> None:
    """ConfigError unless ``value`` is in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{what} must be in [0, 1), got {value}")


def check_positive(what: str, value: float) -> None:
    """ConfigError unless ``value`` is above zero."""
    if not value > 0:
        raise ConfigError(f"{what} must be positive, got {value}")
