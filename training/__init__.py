"""The trial engine: datasets as device tensors, batched augmentation, and `train_model`."""

from hybridnas.training.data import DataError, DataSplits, load_data
from hybridnas.training.engine import EpochReport, TrainResult, TrainSettings, train_model

__all__ = ["DataError", "DataSplits", "EpochReport", "TrainResult", "TrainSettings", "load_data", "train_model"]
