"""The package layers: each package imports only the packages below it, and of another package
only its public names, never a private (`_name`) module.

The order, lowest first, is what the code imports: `storage` needs only `common`; `training`
builds `models`; `search_space` parses training settings too; `objectives` run trials over all
of those; `reports` read studies through `objectives`; `workers` run objectives and put the
`reports` drawings on the dashboard; the API (`hybridnas`) drives workers, and the CLI is over
everything. Every import counts, at module level or inside a function, absolute or relative.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO

TOP = "hybridnas"
LAYERS = ("common", "storage", "models", "training", "search_space", "objectives", "reports", "workers", TOP, "cli")


@dataclass(frozen=True)
class Violation:
    file: str
    line: int
    target: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.target}: {self.why}"


def check_layers(root: Path, layers: Sequence[str], top: str = TOP) -> list[Violation]:
    """Every upward or private cross-package import in the packages `layers` (folder names under
    `root`, lowest first; `top` is the folder of the top package, the others its subpackages)."""
    rank = {name: i for i, name in enumerate(layers)}
    found = []
    for layer in layers:
        folder = root / layer
        for path in sorted(folder.rglob("*.py")):
            parts = [*path.relative_to(folder).with_suffix("").parts]
            module = [top] if layer == top else [top, layer]
            module += parts[:-1] if parts[-1] == "__init__" else parts
            package = module if parts[-1] == "__init__" else module[:-1]
            for line, target in _imports(ast.parse(path.read_bytes(), str(path)), package):
                other, inside = _package_of(target, top, rank)
                if other is None or other == layer:
                    continue
                file = path.relative_to(root).as_posix()
                if rank[other] > rank[layer]:
                    found.append(Violation(file, line, target, f"{other} is above {layer}"))
                if any(name.startswith("_") and not name.startswith("__") for name in inside):
                    found.append(Violation(file, line, target, f"a private module or name of {other}"))
    return found


def _imports(tree: ast.Module, package: list[str]) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything the module imports, anywhere in it; `from m import n`
    gives m.n, since n may be a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            yield from ((node.lineno, source if alias.name == "*" else f"{source}.{alias.name}")
                        for alias in node.names)


def _package_of(target: str, top: str, rank: dict[str, int]) -> tuple[str | None, list[str]]:
    """The layer a dotted name is in (None outside the project), and its parts inside that layer."""
    parts = target.split(".")
    if parts[0] != top:
        return None, []
    if len(parts) > 1 and parts[1] in rank and parts[1] != top:
        return parts[1], parts[2:]
    return top, parts[1:]


def test_packages_import_only_lower_layers_and_public_names() -> None:
    found = check_layers(REPO, LAYERS)
    assert not found, "layer violations (order, lowest first: " + " < ".join(LAYERS) + "):\n" + \
        "\n".join(map(str, found))


def test_every_installed_package_has_a_layer() -> None:
    import tomllib

    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert sorted(package_dir.values()) == sorted(LAYERS)


def test_the_checker_reports_upward_and_private_imports(tmp_path: Path) -> None:
    files = {
        "toy/__init__.py": "import toy.high\nfrom toy.low import ok\n",
        "low/__init__.py": "from toy.low._impl import ok\nfrom . import _impl\n",
        "low/_impl.py": "import os\n\n\ndef ok():\n    from toy.high import shown\n    return shown\n",
        "high/__init__.py": "from toy.low import ok\nfrom toy.low._impl import ok as private\nshown = 1\n",
        "high/relative.py": "from ..low import _impl\nfrom .. import low\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    found = check_layers(tmp_path, ("low", "high", "toy"), top="toy")

    assert [(v.file, v.line, v.target, v.why) for v in found] == [
        ("low/_impl.py", 5, "toy.high.shown", "high is above low"),
        ("high/__init__.py", 2, "toy.low._impl.ok", "a private module or name of low"),
        ("high/relative.py", 1, "toy.low._impl", "a private module or name of low"),
    ]
    assert str(found[0]) == "low/_impl.py:5: imports toy.high.shown: high is above low"
