"""Exceptions with one-line, user-facing messages.

Every error ferlab raises on bad *input* (a file, a row, a value, a name) is a :class:`FerlabError`
whose message names the culprit and says what is wrong, so the CLI can print it as one line.
"""

from __future__ import annotations


class FerlabError(Exception):
    """Base class of ferlab's user-facing errors (the CLI prints ``str(err)`` and exits 2)."""


class ImageReadError(FerlabError):
    """An image file could not be read or decoded."""


class DataError(FerlabError):
    """A dataset file, row, label or layout is wrong or missing."""


class ConfigError(FerlabError):
    """A name, option or value given by the user is not valid."""


def unknown_name(kind: str, name: str, valid) -> ConfigError:
    """A ConfigError for an unknown name that lists the valid ones."""
    valid = sorted(valid)
    return ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(map(str, valid))}")
