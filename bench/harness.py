"""Paths every benchmark shares (run the scripts from anywhere: `python bench/NAME.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# The real CIFAR-10 training images (JPEG, ImageFolder layout) in shared/ beside the clone.
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
CIFAR = f"folder:{ARCHIVE}"
HYBRIDNAS = str(Path(sys.executable).with_name("hybridnas"))


def require_archive() -> None:
    if not ARCHIVE.is_file():
        sys.exit(f"needs the CIFAR-10 archive at {ARCHIVE} (clone the repo with shared/ beside it)")
