"""Kind -> entry registries, as timm registers its models, checked against the config's kinds.

A config field such as `StageConfig.block` is a `Literal` of kinds; the module that implements
them fills a `Registry` with one entry per kind (a builder, or a kind's spec) and calls `check()`
at the end of its body, so a kind added to the config without an entry fails at import, not on
the first sample that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, get_args

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A dict from each value of a `Literal` kind type to the one entry of that kind.

    `entry` names what the registry holds ("builder", "spec") in its error messages.
    """

    def __init__(self, name: str, kinds: Any, entry: str = "builder") -> None:
        super().__init__()
        self.name = name
        self.kinds: tuple[str, ...] = get_args(kinds)
        self.entry = entry

    def add(self, kind: str, entry: T) -> T:
        """`entry` is the one entry of `kind`; a kind the config lacks or has twice is a bug."""
        if kind not in self.kinds:
            raise RuntimeError(f"{self.name} {kind!r} is not one of the config's kinds {self.kinds}")
        if kind in self:
            raise RuntimeError(
                f"{self.name} {kind!r} has two {self.entry}s: {_describe(self[kind])}, {_describe(entry)}"
            )
        self[kind] = entry
        return entry

    def register(self, *kinds: str) -> Callable[[T], T]:
        """Decorator: `builder` builds each of `kinds`."""

        def add(builder: T) -> T:
            for kind in kinds:
                self.add(kind, builder)
            return builder

        return add

    def check(self) -> None:
        """Fail unless every kind the config accepts has an entry."""
        missing = [kind for kind in self.kinds if kind not in self]
        if missing:
            raise RuntimeError(f"{self.name} kinds without a {self.entry}: {', '.join(missing)}")


def _describe(entry: Any) -> str:
    return getattr(entry, "__name__", repr(entry))
