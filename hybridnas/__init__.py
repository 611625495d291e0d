"""hybridnas: neural-architecture search for CNN/attention hybrid image classifiers.

The Python API, for scripts and notebooks (the `hybridnas` command is a thin layer over it):

    from hybridnas import build, presets, profile, search

    model = build(presets.preset("samc"))                      # an nn.Module
    profile(presets.preset("zureick")).params                  # 5,370,314
    definition = search.StudyDefinition(dataset="cifar10", space="demo", trials=30)
    study = search.launch(definition, study="demo", workers=2)  # Ray workers, local or a cluster
    search.export(study, "best.yaml")
    search.retrain("demo", top=3, epochs=15, test=True)

Names load on first use, so importing the package (or the CLI) pulls in neither torch nor Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridnas.common import lazy_names

if TYPE_CHECKING:
    from hybridnas import search
    from hybridnas.models import ArchConfig, build, load_config, parse_config, presets
    from hybridnas.models.profile import profile

_SOURCES = {
    "ArchConfig": "hybridnas.models",
    "build": "hybridnas.models",
    "load_config": "hybridnas.models",
    "parse_config": "hybridnas.models",
    "profile": "hybridnas.models.profile",
}
_MODULES = {"presets": "hybridnas.models.presets", "search": "hybridnas.search"}

__all__ = sorted([*_SOURCES, *_MODULES])
__getattr__, __dir__ = lazy_names(__name__, _SOURCES, _MODULES)
