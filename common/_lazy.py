"""Package names that import their module on first use (PEP 562), for packages whose modules
pull in torch or build pydantic models, so the CLI can import the package cheaply."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, sources: dict[str, str], modules: dict[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`: each name in `sources` comes from the module named
    beside it, each name in `modules` is the module named beside it; imported the first time the
    name is asked for and kept in the package after."""
    namespace = importlib.import_module(package).__dict__
    modules = modules or {}

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = importlib.import_module(modules[name])
        elif name in sources:
            value = getattr(importlib.import_module(sources[name]), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *sources, *modules})

    return __getattr__, __dir__
