"""The trial engine: datasets as device tensors, batched augmentation, and `train_model`.

The names below are imported on first use (PEP 562), so `import hybridnas.training` and its
`settings` module, which the CLI and the study definition need, do not load torch.
"""

from __future__ import annotations

from hybridnas.common import lazy_names

_SOURCES = {
    "DataError": "hybridnas.common",
    "DataSplits": "hybridnas.training.data",
    "load_data": "hybridnas.training.data",
    "EpochReport": "hybridnas.training.loop",
    "TrainResult": "hybridnas.training.loop",
    "train_model": "hybridnas.training.loop",
    "TrainSettings": "hybridnas.training.settings",
    "parse_settings": "hybridnas.training.settings",
}

__all__ = sorted(_SOURCES)
__getattr__, __dir__ = lazy_names(__name__, _SOURCES)
