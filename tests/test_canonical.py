"""The canonical form gives one spelling, and so one architecture key, to configs that build the
same model, and keeps apart configs that do not."""

from __future__ import annotations

import pytest
import torch
from helpers import CIFAR

from hybridnas.models import build, parse_config
from hybridnas.models.canonical import architecture_key, canonical_config
from hybridnas.models.config import ArchConfig
from hybridnas.training.data import load_data


def _net(head: str, last_pool: int) -> ArchConfig:
    """Two conv stages on 32x32 images whose last map is 32 // (4 * last_pool) wide."""
    return parse_config({
        "input": {"image_size": 32, "num_classes": 10},
        "stages": [{"block": "conv", "channels": 16, "pool": {"kind": "max", "size": 4}},
                   {"block": "conv", "channels": 24, "pool": {"kind": "max", "size": last_pool}}],
        "head": {"kind": head, "hidden_units": [32]},
    })


@pytest.fixture(scope="module")
def images(study_env: None) -> torch.Tensor:
    data = load_data(CIFAR, train_subset=64, val_subset=64, seed=0)
    return data.val_x.float() / 255


def test_an_average_pool_head_on_a_1x1_map_is_the_flatten_head(images: torch.Tensor) -> None:
    pooled, flat = _net("avgpool", 8), _net("flatten", 8)
    assert pooled.feature_shapes()[-1] == (24, 1)
    assert canonical_config(pooled) == canonical_config(flat)
    assert canonical_config(pooled)["head"]["kind"] == "flatten"
    assert architecture_key(pooled, {"lr": 0.01}) == architecture_key(flat, {"lr": 0.01})
    torch.manual_seed(0)
    pooled_model = build(pooled).eval()
    torch.manual_seed(0)
    flat_model = build(flat).eval()
    assert [(k, v.shape) for k, v in pooled_model.state_dict().items()] == \
           [(k, v.shape) for k, v in flat_model.state_dict().items()]
    with torch.no_grad():
        assert torch.equal(pooled_model(images), flat_model(images))
    rebuilt = build(parse_config(canonical_config(pooled)))
    assert list(rebuilt.state_dict()) == list(pooled_model.state_dict())


def test_the_two_heads_on_a_wider_map_stay_two_architectures() -> None:
    pooled, flat = _net("avgpool", 4), _net("flatten", 4)
    assert pooled.feature_shapes()[-1] == (24, 2)
    assert canonical_config(pooled)["head"]["kind"] == "avgpool"
    assert architecture_key(pooled) != architecture_key(flat)
    assert sum(p.numel() for p in build(flat).parameters()) > sum(p.numel() for p in build(pooled).parameters())
