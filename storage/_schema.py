"""Opening a database whose schema is already current without importing alembic.

Optuna's :class:`~optuna.storages.RDBStorage` stamps a new database with alembic and checks an
existing one against alembic's head revision on every open. Importing alembic (all its dialect
modules) and reading its migration scripts is a quarter of what `hybridnas status` costs. When
the database's ``alembic_version`` already holds the head revision, both steps are no-ops: this
module reads that one row with SQLAlchemy, finds the head by reading the ``revision`` and
``down_revision`` lines of Optuna's migration scripts, and only then lets the storage open
without table creation, schema check and alembic stamp. Anything else (a new database, an older
schema, an unreadable script directory) takes Optuna's own path unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
import sqlalchemy.exc
from optuna.storages._rdb import storage as rdb

_REVISION = re.compile(r'^revision = "([^"]+)"', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision = "([^"]+)"', re.MULTILINE)
# RDBStorage looks its version manager up as a module global: swapping it is serialized.
_SWAP = threading.Lock()


@functools.cache
def schema_head() -> str | None:
    """Alembic's head revision of the installed Optuna, or None when its scripts do not say."""
    versions = Path(rdb.__file__).parent / "alembic" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revisions.update(_REVISION.findall(text))
        parents.update(_DOWN_REVISION.findall(text))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def schema_is_current(url: str, engine_kwargs: dict) -> bool:
    """Whether the database at ``url`` already has Optuna's tables at the head revision."""
    head = schema_head()
    if head is None:
        return False
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        with engine.connect() as connection:  # an unreachable server is the caller's error, raised once
            try:
                stamped = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalars().all()
            except sqlalchemy.exc.SQLAlchemyError:  # no such table: a new database
                return False
    finally:
        engine.dispose()
    return stamped == [head]


class _StampedVersionManager(rdb._VersionManager):
    """Optuna's version manager for a database already stamped with the head revision."""

    def _init_alembic(self) -> None:
        """Nothing to stamp (checked by :func:`schema_is_current`), so alembic stays unimported."""


@contextlib.contextmanager
def schema_aware_open(url: str, engine_kwargs: dict) -> Iterator[dict]:
    """Extra RDBStorage keyword arguments, to construct it inside this context: for a database
    at the head revision, no table creation, no schema check and no alembic stamp."""
    with _SWAP:  # also when nothing is swapped: another thread's swap must not reach this open
        if not schema_is_current(url, engine_kwargs):
            yield {}
            return
        original = rdb._VersionManager
        rdb._VersionManager = _StampedVersionManager
        try:
            yield {"skip_table_creation": True, "skip_compatibility_check": True}
        finally:
            rdb._VersionManager = original
