"""Kind -> builder registries, as timm registers its models, checked against the config's kinds.

A config field such as `StageConfig.block` is a `Literal` of kinds; the module that implements
them fills a `Registry` with one builder per kind and calls `check()` at the end of its body, so
a kind added to the config without a builder fails at import, not on the first sample that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, get_args

B = TypeVar("B", bound=Callable[..., Any])


class Registry(dict[str, B], Generic[B]):
    """A dict from each value of a `Literal` kind type to the one builder of that kind."""

    def __init__(self, name: str, kinds: Any) -> None:
        super().__init__()
        self.name = name
        self.kinds: tuple[str, ...] = get_args(kinds)

    def register(self, *kinds: str) -> Callable[[B], B]:
        """Decorator: `builder` builds each of `kinds`; a kind the config lacks or has twice is a bug."""

        def add(builder: B) -> B:
            for kind in kinds:
                if kind not in self.kinds:
                    raise RuntimeError(f"{self.name} {kind!r} is not one of the config's kinds {self.kinds}")
                if kind in self:
                    raise RuntimeError(f"{self.name} {kind!r} has two builders: {self[kind].__name__}, {builder.__name__}")
                self[kind] = builder
            return builder

        return add

    def check(self) -> None:
        """Fail unless every kind the config accepts has a builder."""
        missing = [kind for kind in self.kinds if kind not in self]
        if missing:
            raise RuntimeError(f"{self.name} kinds without a builder: {', '.join(missing)}")
