"""What every hybridnas package shares: one error hierarchy and the safe document loader.

Light on purpose (pydantic and PyYAML only), so the CLI can import it without torch or Ray.
"""

from hybridnas.common._documents import format_validation_error, load_document, read_document_file, validate_model
from hybridnas.common._errors import ConfigError, DataError, HybridNASError, StorageError, UsageError, first_line
from hybridnas.common._interrupt import (
    CHECK_EVERY_S,
    catch_ctrl_c,
    ctrl_c_as_request,
    raise_if_interrupted,
    stop_requested,
)
from hybridnas.common._lazy import lazy_names

__all__ = [
    "CHECK_EVERY_S",
    "ConfigError",
    "DataError",
    "HybridNASError",
    "StorageError",
    "UsageError",
    "catch_ctrl_c",
    "ctrl_c_as_request",
    "first_line",
    "format_validation_error",
    "lazy_names",
    "load_document",
    "raise_if_interrupted",
    "read_document_file",
    "stop_requested",
    "validate_model",
]
