"""Architecture views: the one-line summary, per-stage rows, the SVG diagram and the trial note.

The diagram's layout is checked against its own text model (monospace: a line's width is its
length x CHAR_EM x font size) for every preset and a sample of the union space; one test renders
diagrams in headless Chromium and checks the model against the widths the browser measures.
"""

from __future__ import annotations

import functools
import re
import shutil
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest
from helpers import SCREENS, chromium

from hybridnas.models.config import ArchConfig
from hybridnas.models.presets import PRESETS, preset
from hybridnas.models.profile import ModelProfile, profile
from hybridnas.reports import architecture_summary, architecture_svg, stage_rows, trial_note
from hybridnas.reports import _architecture as layout
from hybridnas.search_space import load_space, sample_configs

SVG = "{http://www.w3.org/2000/svg}"
Rect = tuple[float, float, float, float]  # left, top, right, bottom

SUMMARIES = {
    "zureick": "2 stages [conv 64x2 + Luong, conv 256x2 (5)] -> flatten -> fc 512 -> 10",
    "chae": "4 stages [conv 32, conv 32, conv 64, conv 128 + transformer] -> CLS LN -> 11",
    "samc": "3 stages [ms 48 (3/5/7) + conv-MHSA, ms 96 (3/5/7) + conv-MHSA, ms 144 (3/5/7) + conv-MHSA]"
            " -> avgpool -> 10",
    "se_r_resnet34": "stem conv3x3 64 -> 4 stages [basic 64x3 SE, basic 128x4 SE | aux w=0.4 feeds SE, "
                     "basic 256x6 SE | aux w=0.4 feeds SE, basic 512x3 SE] -> avgpool -> 100",
    "se_a_resnet101": "stem conv3x3 64 -> 4 stages [bneck 64x3 SE, bneck 128x4 SE | aux w=0.3, "
                      "bneck 256x23 SE | aux w=0.2, bneck 512x3 SE] -> avgpool -> 100",
}


@functools.cache
def union_samples() -> list[ArchConfig]:
    return sample_configs(load_space("union"), 40, seed=7)


ALL_CONFIGS = [pytest.param(name, id=name) for name in PRESETS] + [
    pytest.param(i, id=f"union-{i}") for i in range(40)
]


@functools.cache
def case(which: str | int) -> tuple[ArchConfig, ModelProfile]:
    """A preset by name or the union sample by index, with its profile."""
    cfg = preset(which) if isinstance(which, str) else union_samples()[which]
    return cfg, profile(cfg)


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_summary_of_presets(name: str) -> None:
    assert architecture_summary(preset(name)) == SUMMARIES[name]


@pytest.mark.parametrize("which", ALL_CONFIGS)
def test_stage_rows_account_for_every_parameter(which: str | int) -> None:
    cfg, prof = case(which)
    rows = stage_rows(cfg, modules=prof.modules)
    assert [r["name"] for r in rows] == (["stem"] if cfg.stem.kind != "none" else []) + [
        f"stage {i}" for i in range(len(cfg.stages))
    ] + ["head"]
    assert sum(r["params"] + (r["aux_params"] or 0) for r in rows) == prof.params
    shapes = [r["output"] for r in rows if r["name"].startswith("stage")]
    assert shapes == [f"{c}×{s}×{s}" for c, s in cfg.feature_shapes()]
    assert sum(r["aux"] is not None for r in rows) == len(cfg.aux)


def test_stage_rows_profile_when_not_given_a_breakdown() -> None:
    cfg, prof = case("samc")
    assert stage_rows(cfg) == stage_rows(cfg, modules=prof.modules)


def _text_extent(text: ET.Element) -> Rect:
    x, y, size = float(text.get("x")), float(text.get("y")), float(text.get("font-size"))
    return (x, y - layout.ASCENT_EM * size, x + layout.text_width(text.text or "", size), y + layout.DESCENT_EM * size)


def _rect(rect: ET.Element) -> Rect:
    x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
    return (x, y, x + float(rect.get("width")), y + float(rect.get("height")))


def _inside(inner: Rect, outer: Rect) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _segments(polyline: ET.Element) -> list[Rect]:
    """The polyline's segments as degenerate rectangles (they are axis-parallel)."""
    points = [tuple(map(float, p.split(","))) for p in polyline.get("points").split()]
    return [(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)) for (x0, y0), (x1, y1) in zip(points, points[1:])]


def _crosses(segment: Rect, box: Rect) -> bool:
    """Whether an axis-parallel segment passes through the box's interior (touching an edge is fine)."""
    return (box[0] < segment[2] and segment[0] < box[2] and box[1] < segment[3] and segment[1] < box[3]) or (
        box[0] < segment[0] < box[2] and box[1] < segment[1] < box[3]
    )


def check_layout(svg: str) -> dict[str, Rect]:
    """Assert nothing overflows or overlaps; return each box's rectangle by its module name."""
    root = ET.fromstring(svg)
    _, _, width, height = map(float, root.get("viewBox").split())
    canvas = (0.0, 0.0, width, height)
    texts: list[Rect] = []
    boxes: dict[str, Rect] = {}

    def visit(group: ET.Element, parent: Rect) -> Rect:
        rect = _rect(group.find(f"{SVG}rect"))
        assert _inside(rect, parent), group.get("data-name")
        badges = [visit(child, rect) for child in group.findall(f"{SVG}g")]
        for text in group.findall(f"{SVG}text"):
            extent = _text_extent(text)
            assert _inside(extent, rect), (text.text, extent, rect)
            assert not any(_overlap(extent, badge) for badge in badges), text.text
            texts.append(extent)
        boxes[group.get("data-name")] = rect
        return rect

    top = [visit(group, canvas) for group in root.findall(f"{SVG}g")]
    for text in root.findall(f"{SVG}text"):
        texts.append(_text_extent(text))
        assert _inside(texts[-1], canvas), text.text
    for a, b in combinations(top, 2):
        assert not _overlap(a, b), (a, b)
    for a, b in combinations(texts, 2):
        assert not _overlap(a, b), (a, b)
    for polyline in root.iter(f"{SVG}polyline"):
        for segment in _segments(polyline):
            assert _inside(segment, canvas)
            assert not any(_crosses(segment, box) for box in [*texts, *top]), segment
    return boxes


@pytest.mark.parametrize("which", ALL_CONFIGS)
def test_svg_shows_every_part_without_overlaps(which: str | int) -> None:
    cfg, prof = case(which)
    svg = architecture_svg(cfg, modules=prof.modules)
    boxes = check_layout(svg)
    stages = [f"stages.{i}" for i in range(len(cfg.stages))]
    attention = [f"stages.{i}.attention" for i, s in enumerate(cfg.stages) if s.attention is not None]
    aux = [f"aux_heads.{j}" for j in range(len(cfg.aux))]
    stem = ["stem"] if cfg.stem.kind != "none" else []
    assert set(boxes) == {"input", *stem, *stages, *attention, *aux, "head"}
    for i in range(len(cfg.stages) - 1):  # top to bottom
        assert boxes[f"stages.{i}"][3] < boxes[f"stages.{i + 1}"][1]
    for j, head in enumerate(cfg.aux):  # beside the stage it follows
        assert boxes[f"aux_heads.{j}"][0] > boxes[f"stages.{head.after_stage}"][2]
    fed = sum(s.se_reduction is not None and any(a.feeds_attention and a.after_stage < i for a in cfg.aux)
              for i, s in enumerate(cfg.stages))
    assert svg.count('stroke-dasharray="5 4"') == fed


def test_svg_of_se_r_resnet_draws_the_feeds() -> None:
    svg = architecture_svg(preset("se_r_resnet34"))
    assert svg.count('stroke-dasharray="5 4"') == 2  # aux 0 -> stage 2, aux 1 -> stage 3
    assert "SE r=8 + aux 0 logits" in svg and "logits feed SE of stage 3" in svg
    assert "loss weight 0.4" in svg


def test_svg_escapes_and_shortens_the_title() -> None:
    cfg = preset("zureick")
    svg = architecture_svg(cfg, title="a <b> & 'c'")
    assert ET.fromstring(svg).find(f"{SVG}title").text == "a <b> & 'c'"
    long = architecture_svg(cfg, title="x" * 500)
    check_layout(long)
    assert "x" * 500 not in long and "x" * 77 + "..." in long


def test_trial_note() -> None:
    cfg, prof = case("se_r_resnet34")
    note = trial_note(cfg, params=prof.params, macs=prof.macs, training={"lr": 0.0027189878809686804, "optimizer": "sgd"},
                      modules=prof.modules)
    first, *rest = note.splitlines()
    assert first == "**" + SUMMARIES["se_r_resnet34"].replace("|", "\\|") + "**"
    assert "| params | MACs | latency | training |" in rest
    assert f"| {prof.params:,} (26.1M) | {prof.macs:,} (1.16G) | - | lr=0.002719, optimizer=sgd |" in rest
    assert "| stage 2 | basic + SE r=8 | 256 | 6 | 3 | - | 256×8×8 | 6.94M |" in rest
    assert sum(line.startswith("| ↳ | aux ") for line in rest) == 2
    samc, samc_prof = case("samc")
    plain = trial_note(samc, params=1, macs=2, latency_ms=1.234, modules=samc_prof.modules)
    assert "| params | MACs | latency |" in plain and "| 1 (1) | 2 (2) | 1.23 ms |" in plain
    assert "conv-MHSA · 4 heads · depth 3 · mlp ×2 · kv stride 2" in plain


# Appended to the page: the widest text relative to the layout model's width, as the browser
# lays it out with whatever monospace font it has.
MEASURE = """<script>
const ratios = [...document.querySelectorAll("svg text")].map(t => {
  const size = parseFloat(t.getAttribute("font-size"));
  return t.getComputedTextLength() / (t.textContent.length * %s * size);
});
document.title = "widest=" + Math.max(...ratios);
</script>"""


@pytest.mark.integration  # headless Chromium
def test_diagrams_render_within_their_boxes(tmp_path: Path) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    busiest = max(union_samples(), key=lambda c: (len(c.aux), len(c.stages), sum(a.feeds_attention for a in c.aux)))
    for name, cfg in [("zureick", preset("zureick")), ("se_r_resnet34", preset("se_r_resnet34")),
                      ("union-sample", busiest)]:
        svg = architecture_svg(cfg)
        root = ET.fromstring(svg)
        width, height = (int(float(root.get(k))) + 16 for k in ("width", "height"))
        page = tmp_path / f"{name}.html"
        page.write_text(f'<!DOCTYPE html><html><body style="margin:8px">{svg}{MEASURE % layout.CHAR_EM}</body></html>')
        widest = float(re.search(r"<title>widest=([0-9.]+)</title>", chromium("--dump-dom", page.as_uri()))[1])
        assert 0.9 < widest <= 1.0, widest  # the model never underestimates, and not by much
        png = tmp_path / f"diagram-{name}.png"
        chromium(f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri())
        assert png.stat().st_size > 0
        shutil.copy(png, SCREENS / png.name)
