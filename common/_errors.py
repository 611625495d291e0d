"""One error hierarchy: the CLI catches `HybridNASError` once and prints its one-line message.

Every message names what was wrong (the field, the file, the URL with its password masked)
in the library's own words; only the CLI speaks in flags.
"""

from __future__ import annotations


class HybridNASError(Exception):
    """A problem with what was asked for, not a bug: the message is one line a user can act on."""


class ConfigError(HybridNASError, ValueError):
    """A config, space or study definition that cannot be used; names the field and the reason.

    A ValueError too, so a ConfigError raised inside a pydantic validator becomes part of that
    model's ValidationError, with the field's location.
    """


class DataError(HybridNASError, ValueError):
    """A dataset that is missing, corrupt or laid out in a way we cannot read."""


class StorageError(HybridNASError):
    """A storage or artifact store that cannot be used; the password is masked."""


class UsageError(HybridNASError):
    """Options that do not fit together, or a request the study cannot answer."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, else its type's name."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
