"""Reading user documents (configs, spaces, study definitions) safely, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hybridnas.common._errors import ConfigError, first_line

Model = TypeVar("Model", bound=BaseModel)


def format_validation_error(err: ValidationError) -> str:
    """pydantic's errors as one line of 'dotted.field: reason' parts."""
    parts = []
    for e in err.errors():
        loc = ".".join(_field_name(p) for p in e["loc"])
        msg = _one_line(e["msg"].removeprefix("Value error, "))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _field_name(part: object) -> str:
    """A location part as written, or quoted with escapes where it is not a printable name: a
    document's own key (an unknown field) can hold a line break or be empty."""
    text = str(part)
    return text if text and text.isprintable() else repr(text)


def _one_line(text: str) -> str:
    """`text` with its non-printable characters escaped (letters of any script kept), for a reason
    that quotes the document."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def validate_model(model: type[Model], data: Any, source: str) -> Model:
    """Validate plain data (a mapping) into `model`, or raise ConfigError naming source and field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_validation_error(err)}") from None
    except (ConfigError, ValueError, TypeError) as err:  # raised by validators outside pydantic's wrapping
        raise ConfigError(f"{source}: {err}") from None


def read_document_file(path: str | Path) -> Any:
    """Safe-load a YAML/JSON file, naming the file in every error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    return load_document(raw, str(path))


def load_document(raw: bytes, source: str) -> Any:
    """Safe-load one YAML/JSON document; refuses aliases (billion laughs) and bad bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 (byte {err.start})") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML/JSON ({first_line(err)})") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{source}: unreadable value ({first_line(err)})") from None


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that rejects anchors/aliases: configs never need them, bombs always do."""

    def compose_node(self, parent, index):  # noqa: ANN001 - yaml's own signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases are not allowed in hybridnas files", event.start_mark
            )
        return super().compose_node(parent, index)
