"""The error type the CLI prints as one line instead of a traceback."""

from __future__ import annotations

from hybridnas.models.config import ConfigError
from hybridnas.storage import StorageError


class UserError(Exception):
    """A mistake in what the user asked for; its message says what and where."""


USER_ERRORS: tuple[type[Exception], ...] = (UserError, ConfigError, StorageError, FileNotFoundError)
