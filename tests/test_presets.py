"""The paper presets build, train a step, and land on the papers' own parameter and MAC figures."""

import pytest
import torch

from hybridnas.models import HybridOutput, build
from hybridnas.models.papers import PAPER_MODELS, paper_model
from hybridnas.models.presets import PRESETS, preset
from hybridnas.models.profile import profile

STATED = [m for m in PAPER_MODELS if m.params is not None or m.macs is not None]


@pytest.mark.parametrize("paper", STATED, ids=lambda m: f"{m.preset}-{m.num_classes}")
def test_preset_lands_on_its_papers_figures(paper):
    prof = profile(preset(paper.preset, num_classes=paper.num_classes, image_size=paper.image_size))
    params = prof.trainable_params if paper.trainable_only else prof.params
    assert paper.params is None or paper.params.admits(params), params
    assert paper.macs is None or paper.macs.admits(prof.macs), prof.macs


def test_every_preset_is_a_papers_model_and_defaults_to_its_input():
    assert {m.preset for m in PAPER_MODELS} == set(PRESETS)
    for name in PRESETS:
        cfg, paper = preset(name), paper_model(name)
        assert (cfg.input.image_size, cfg.input.num_classes) == (paper.image_size, paper.num_classes), name


def test_zureicks_keras_bn_statistics_are_buffers_not_parameters():
    prof = profile(preset("zureick"))
    assert prof.params == prof.trainable_params  # Keras counts 640 non-trainable BN statistics


def test_se_r_resnet_counts_are_exact_to_the_papers_rounding():
    # the aux logits feed only the stage right after each aux head; any other reading misses these
    assert [profile(preset(f"se_r_resnet{d}")).params for d in (34, 50, 101)] == [26_144_836, 33_530_764, 57_242_636]


def test_se_a_variant_differs_from_se_r_only_by_the_fed_se_inputs():
    se_a, se_r = profile(preset("se_a_resnet34")), profile(preset("se_r_resnet34"))
    # stage 3: 6 blocks x 100 logits x 32 hidden; stage 4: 3 blocks x 100 x 64
    assert se_r.params - se_a.params == 6 * 100 * 32 + 3 * 100 * 64


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_trains_one_step(name):
    torch.manual_seed(0)
    cfg = preset(name, image_size=64) if name == "chae" else preset(name)
    model = build(cfg).train()
    x = torch.randn(2, 3, cfg.input.image_size, cfg.input.image_size)
    y = torch.tensor([0, 1])
    out = model(x)
    logits = out.logits if isinstance(out, HybridOutput) else out
    assert logits.shape == (2, cfg.input.num_classes)
    loss = torch.nn.functional.cross_entropy(logits, y)
    if isinstance(out, HybridOutput):
        assert len(out.aux_logits) == len(cfg.aux)
        loss = loss + sum(a.loss_weight * torch.nn.functional.cross_entropy(o, y) for a, o in zip(cfg.aux, out.aux_logits))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, cfg.input.num_classes)


def test_chae_runs_at_its_papers_resolution():
    model = build(preset("chae")).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 256, 256)).shape == (1, 11)


def test_zureick_attention_attends_within_rows_like_keras():
    from hybridnas.models.attention import LuongAttention

    x = torch.randn(1, 4, 3, 5)
    out = LuongAttention("rows")(x)
    seq = x.permute(0, 2, 3, 1)  # B, H, W, C as Keras sees it
    expected = torch.softmax(seq @ seq.transpose(-1, -2), dim=-1) @ seq
    assert torch.allclose(out, expected.permute(0, 3, 1, 2), atol=1e-5)
