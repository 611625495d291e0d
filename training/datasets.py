"""Dataset specs and where their files are, without torch.

A spec is `cifar10`, `cifar100` or `folder:PATH`. The study definition checks a spec's form
when it validates, and `launch` checks that its files can be read (`check_dataset`) before it
stores a study, even with no workers: a bad dataset is refused where it is typed, not when a
worker on another machine starts. Neither decodes an image, so both take milliseconds.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from hybridnas.common import DataError, first_line

CIFAR = ("cifar10", "cifar100")
FOLDER_PREFIX = "folder:"
SPECS = "cifar10, cifar100 or folder:PATH"


def cache_dir() -> Path:
    return Path(os.environ.get("HYBRIDNAS_CACHE") or Path.home() / ".cache" / "hybridnas")


def cifar_root(data_dir: str | Path | None) -> Path:
    """Where CIFAR's files are (or a download goes): `data_dir`, else $HYBRIDNAS_DATA, else the cache."""
    return Path(data_dir or os.environ.get("HYBRIDNAS_DATA") or cache_dir() / "data").expanduser()


def folder_path(spec: str) -> Path | None:
    """The path of a `folder:` spec, None for any other spec."""
    return Path(spec.removeprefix(FOLDER_PREFIX)).expanduser() if spec.startswith(FOLDER_PREFIX) else None


def spec_problem(spec: object) -> str | None:
    """Why `spec` is not a dataset spec, or None; its form only, no file is touched."""
    if isinstance(spec, str) and (spec in CIFAR or (spec.startswith(FOLDER_PREFIX) and spec != FOLDER_PREFIX)):
        return None
    return f"unknown dataset {spec!r}; use {SPECS}"


def check_dataset(spec: str, data_dir: str | Path | None = None) -> None:
    """DataError unless the dataset's files can be opened: a folder tree that exists and is
    readable, or a tar archive whose first entry reads; for CIFAR, a data directory that is a
    directory (when absent, the workers download into it)."""
    problem = spec_problem(spec)
    if problem:
        raise DataError(f"dataset: {problem}")
    if data_dir is not None and not isinstance(data_dir, (str, Path)):
        raise DataError(f"data_dir: {data_dir!r} is not a path")
    path = folder_path(spec)
    if path is None:
        root = cifar_root(data_dir)
        if root.exists() and not root.is_dir():
            raise DataError(f"data_dir: {root} is not a directory (from data_dir, else $HYBRIDNAS_DATA)")
        return
    if not path.exists():
        raise DataError(f"dataset: folder dataset {path} does not exist")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataError(f"dataset: folder dataset {path} is not readable")
        return
    try:
        with tarfile.open(path) as tar:
            tar.next()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"dataset: {path}: not a readable ImageFolder tree or tar archive ({first_line(err)})") from None
