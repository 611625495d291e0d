"""What a config looks like to a person: a one-line summary, per-stage rows, an SVG diagram and
the markdown note optuna-dashboard shows beside a trial.

Everything here is a function of the config alone, so a search trial, the HTML report and the
dashboard describe an architecture the same way. Per-stage parameter counts come from the
per-module breakdown of `profile(cfg)`; a caller that has already profiled the config passes
that breakdown as `modules` (a search trial profiles once), otherwise it is computed here on
the meta device (torch is imported only then).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from hybridnas.models.block_specs import BLOCK_SPECS

if TYPE_CHECKING:
    from hybridnas.models.config import ArchConfig, AttentionConfig, AuxConfig, PoolConfig, StageConfig, StemConfig

Modules = Sequence[Mapping[str, Any]]

_ATTENTION_NAMES = {"mhsa": "MHSA", "conv_mhsa": "conv-MHSA", "transformer": "transformer", "luong": "Luong"}
_HEAD_NAMES = {"avgpool": "avgpool", "flatten": "flatten", "cls": "CLS"}


def architecture_summary(cfg: ArchConfig) -> str:
    """One line that says what the network is, for a trial list, a note or a report heading.

    Form: ``stem conv3x3 64 -> 3 stages [res 32, ms 48 (3/5/7) + conv-MHSA, basic 64x2 SE | aux w=0.3]
    -> avgpool -> fc 512 -> 10``. Stem: ``convKxK C`` (``Nx convKxK C`` for N layers) or
    ``ms C (kernels)``; left out when there is none. A stage: its block (conv, res = residual
    module, basic, bneck = bottleneck, ms = multi-scale embedding), its width, ``xD`` for depth D > 1,
    ``(3/5/7)`` for kernel sizes other than a single 3 (basic and bneck have fixed kernels), ``SE``
    for squeeze-excitation, ``+ kind`` for the attention at its end (MHSA, conv-MHSA, transformer,
    Luong) and ``| aux w=W`` for an aux classifier after it with loss weight W (``feeds SE`` when
    its logits enter later SE blocks). Head: avgpool, flatten or CLS (``LN`` = LayerNorm), ``fc N``
    per hidden layer, then the class count.
    """
    parts = [f"stem {_stem_summary(cfg.stem)}"] if cfg.stem.kind != "none" else []
    aux_after = {a.after_stage: a for a in cfg.aux}
    stages = [_stage_summary(stage, aux_after.get(i)) for i, stage in enumerate(cfg.stages)]
    count = len(cfg.stages)
    parts.append(f"{count} stage{'' if count == 1 else 's'} [{', '.join(stages)}]")
    head = _HEAD_NAMES[cfg.head.kind] + (" LN" if cfg.head.norm == "layernorm" else "")
    parts += [head, *(f"fc {units}" for units in cfg.head.hidden_units), str(cfg.input.num_classes)]
    return " -> ".join(parts)


def _stem_summary(stem: StemConfig) -> str:
    if stem.kind == "multiscale":
        return f"ms {stem.channels} ({_stem_kernels(stem)})"
    k = stem.kernel_sizes[0]
    return f"{f'{stem.depth}x ' if stem.depth > 1 else ''}conv{k}x{k} {stem.channels}"


def _stage_summary(stage: StageConfig, aux: AuxConfig | None) -> str:
    spec = BLOCK_SPECS[stage.block]
    text = f"{spec.label} {stage.channels}" + (f"x{stage.depth}" if stage.depth > 1 else "")
    kernels = _kernels(stage)
    if spec.kernels != "fixed" and kernels != "3":
        text += f" ({kernels})"
    if stage.se_reduction is not None:
        text += " SE"
    if stage.attention is not None:
        text += f" + {_ATTENTION_NAMES[stage.attention.kind]}"
    if aux is not None:
        text += f" | aux w={aux.loss_weight:g}" + (" feeds SE" if aux.feeds_attention else "")
    return text


def _kernels(stage: StageConfig) -> str:
    """The kernel sizes the stage's convs use: per layer, in parallel, or fixed by the block."""
    spec = BLOCK_SPECS[stage.block]
    if spec.kernels == "fixed":
        return spec.fixed_kernels
    sizes = stage.kernel_sizes
    if spec.kernels == "first" or len(set(sizes)) == 1:
        sizes = sizes[:1]
    return "/".join(map(str, sizes))


def _stem_kernels(stem: StemConfig) -> str:
    return "/".join(map(str, stem.kernel_sizes if stem.kind == "multiscale" else stem.kernel_sizes[:1]))


def _attention_label(att: AttentionConfig, width: int) -> str:
    """The attention's kind and the settings that kind reads."""
    parts = [_ATTENTION_NAMES[att.kind]]
    if att.kind == "luong":
        parts.append("within rows" if att.scope == "rows" else "global")
    else:
        parts.append(f"{att.heads} head{'' if att.heads == 1 else 's'}")
    if att.kind in ("mhsa", "transformer"):
        parts.append(f"dim {att.dim or width}")
    if att.kind in ("conv_mhsa", "transformer"):
        parts += [f"depth {att.depth}", f"mlp ×{att.mlp_ratio:g}"]
    if att.kind == "conv_mhsa" and att.kv_stride > 1:
        parts.append(f"kv stride {att.kv_stride}")
    return " · ".join(parts)


def _aux_label(j: int, aux: AuxConfig) -> str:
    return f"aux {j} · loss weight {aux.loss_weight:g}" + (" · feeds SE" if aux.feeds_attention else "")


def _pooling(pool: PoolConfig) -> list[str]:
    return [] if pool.kind == "none" else [f"{pool.kind}pool {pool.size}"]


def _shape(channels: int, size: int) -> str:
    return f"{channels}×{size}×{size}"


def _short(n: int) -> str:
    """A count at three significant digits: 902, 9.31K, 6.94M, 1.16G."""
    for scale, unit in ((10**9, "G"), (10**6, "M"), (10**3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.{max(0, 2 - int(math.log10(value)))}f}{unit}"
    return str(n)


def _module_params(cfg: ArchConfig, modules: Modules | None) -> dict[str, int]:
    if modules is None:
        from hybridnas.models.profile import profile

        modules = profile(cfg).modules
    return {str(m["module"]): int(m["params"]) for m in modules}


def stage_rows(cfg: ArchConfig, *, modules: Modules | None = None) -> list[dict[str, Any]]:
    """One row per part of the network (stem if any, each stage, head), for tables.

    Keys: name ("stem", "stage 0", ..., "head"), module (its name in `profile(cfg).modules`),
    block (with SE and its reduction), width, depth, kernels ("3/5/7"), attention (kind and
    settings), aux (the aux classifier after the stage), output (C×H×W, or the class count
    for the head), params, aux_params. Values that do not apply are None; params plus
    aux_params over all rows is the model's parameter count. `modules` is `profile(cfg).modules`
    when the caller already has it.
    """
    return _rows(cfg, _module_params(cfg, modules))


def _rows(cfg: ArchConfig, params: Mapping[str, int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    empty = {"attention": None, "aux": None, "aux_params": None}
    stem = cfg.stem
    if stem.kind != "none":
        size = cfg.input.image_size if stem.pool.kind == "none" else cfg.input.image_size // stem.pool.size
        rows.append({
            "name": "stem", "module": "stem", "block": stem.kind, "width": stem.channels,
            "depth": stem.depth if stem.kind == "conv" else 1, "kernels": _stem_kernels(stem),
            "output": _shape(stem.channels, size), "params": params.get("stem", 0), **empty,
        })
    aux_after = {a.after_stage: j for j, a in enumerate(cfg.aux)}
    for i, (stage, (channels, size)) in enumerate(zip(cfg.stages, cfg.feature_shapes())):
        j = aux_after.get(i)
        rows.append({
            "name": f"stage {i}", "module": f"stages.{i}",
            "block": stage.block + (f" + SE r={stage.se_reduction}" if stage.se_reduction is not None else ""),
            "width": stage.channels, "depth": stage.depth, "kernels": _kernels(stage),
            "attention": _attention_label(stage.attention, channels) if stage.attention is not None else None,
            "aux": _aux_label(j, cfg.aux[j]) if j is not None else None,
            "output": _shape(channels, size), "params": params.get(f"stages.{i}", 0),
            "aux_params": params.get(f"aux_heads.{j}", 0) if j is not None else None,
        })
    head = cfg.head
    block = _HEAD_NAMES[head.kind] + (" + LayerNorm" if head.norm == "layernorm" else "")
    rows.append({
        "name": "head", "module": "head", "block": block + "".join(f" → fc {u}" for u in head.hidden_units),
        "width": None, "depth": None, "kernels": None, "output": str(cfg.input.num_classes),
        "params": params.get("head", 0), **empty,
    })
    return rows


def trial_note(
    cfg: ArchConfig,
    *,
    params: int,
    macs: int,
    latency_ms: float | None = None,
    training: Mapping[str, Any] | None = None,
    modules: Modules | None = None,
) -> str:
    """The markdown note optuna-dashboard shows on a trial's page: what was searched, at a glance.

    The summary line, a table of the totals (and the trial's training settings, if any), and
    the per-stage table; aux heads get a row of their own after their stage. `modules` is
    `profile(cfg).modules` when the caller already has it.
    """
    latency = "-" if latency_ms is None else f"{latency_ms:.2f} ms"
    totals = {"params": f"{params:,} ({_short(params)})", "MACs": f"{macs:,} ({_short(macs)})", "latency": latency}
    if training:
        totals["training"] = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in training.items())
    lines = [f"**{_md(architecture_summary(cfg))}**", "", *_md_table(list(totals), [list(totals.values())]), ""]
    header = ["stage", "block", "width", "depth", "kernels", "attention", "output", "params"]
    body = []
    for row in stage_rows(cfg, modules=modules):
        body.append([row["name"], row["block"], row["width"], row["depth"], row["kernels"], row["attention"],
                     row["output"], _short(row["params"])])
        if row["aux"] is not None:
            classes = str(cfg.input.num_classes)
            body.append(["↳", row["aux"], None, None, None, None, classes, _short(row["aux_params"])])
    return "\n".join([*lines, *_md_table(header, body)]) + "\n"


def _md(text: object) -> str:
    """Markdown-escaped text; None (not applicable) as '-'."""
    if text is None:
        return "-"
    return "".join("\\" + c if c in "\\`*_|<" else c for c in str(text))


def _md_table(header: list[str], rows: list[list[object]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows),
    ]


# The SVG's layout model. Text is monospace, so its extent is known without a font: a line of
# n characters at size s spans n * CHAR_EM * s horizontally (DejaVu Sans Mono, Liberation
# Mono, Menlo and Courier advance 0.60 em; Consolas 0.55) and ASCENT_EM * s above to
# DESCENT_EM * s below its baseline. Boxes are sized from these extents; tests check them.
FONT_FAMILY = "DejaVu Sans Mono, Liberation Mono, Menlo, Consolas, monospace"
CHAR_EM = 0.62
ASCENT_EM = 0.8
DESCENT_EM = 0.25
_SIZE = 12  # body text
_TITLE_SIZE = 15
_LINE = 17  # line pitch of body text
_BASELINE = 13  # baseline below a line's top
_PAD = 10  # box padding
_BADGE_PAD = 5
_MARGIN = 20
_GAP = 30  # between boxes of the main column (room for an arrow)
_LANE = 24  # from the main column to the lane of the dashed SE-feed arrows
_AUX_GAP = 48  # from the main column to the aux column
_MIN_WIDTH = 300
_TITLE_CHARS = 80
_STYLES = {  # fill, stroke
    "io": ("#f3f4f6", "#6b7280"),
    "stage": ("#e8f0fe", "#3b6fb6"),
    "attention": ("#fff1db", "#d97706"),
    "aux": ("#e7f6ec", "#2f855a"),
}


def text_width(text: str, size: float) -> float:
    """The layout model's width of a line of text."""
    return len(text) * CHAR_EM * size


@dataclass
class _Box:
    """A rectangle with lines of text; a stage's attention is a badge (a box) among its lines."""

    kind: str
    name: str
    lines: list[str | _Box]
    bold_first: bool = True
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    texts: list[tuple[float, float, str, bool]] = field(default_factory=list)

    @property
    def pad(self) -> int:
        return _BADGE_PAD if self.kind == "attention" else _PAD

    @property
    def h(self) -> float:
        return 2 * self.pad + sum(_LINE if isinstance(line, str) else line.h + 6 for line in self.lines)

    def needed_width(self) -> float:
        return 2 * self.pad + max(
            text_width(line, _SIZE) if isinstance(line, str) else line.needed_width() for line in self.lines
        )

    def place(self, x: float, y: float, w: float) -> None:
        """Fix the box's corner and width, and so where each of its lines and badges goes."""
        self.x, self.y, self.w = x, y, w
        top = y + self.pad
        self.texts = []
        for i, line in enumerate(self.lines):
            if isinstance(line, _Box):
                line.place(x + self.pad, top + 3, w - 2 * self.pad)
                top += line.h + 6
            else:
                self.texts.append((x + self.pad, top + _BASELINE, line, self.bold_first and i == 0))
                top += _LINE

    def svg(self) -> list[str]:
        fill, stroke = _STYLES[self.kind]
        out = [f'<g class="box {self.kind}" data-name={quoteattr(self.name)}>',
               f'<rect x="{self.x:g}" y="{self.y:g}" width="{self.w:g}" height="{self.h:g}" '
               f'rx="{8 if self.kind == "attention" else 4}" fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>']
        out += [_text(x, y, text, _SIZE, bold=bold) for x, y, text, bold in self.texts]
        for line in self.lines:
            if isinstance(line, _Box):
                out += line.svg()
        return [*out, "</g>"]


def _text(x: float, y: float, text: str, size: int, *, bold: bool = False, fill: str = "#111827") -> str:
    weight = ' font-weight="bold"' if bold else ""
    return f'<text x="{x:g}" y="{y:g}" font-size="{size}"{weight} fill="{fill}">{escape(text)}</text>'


def _arrow(points: list[tuple[float, float]], color: str = "#374151", dashed: bool = False) -> list[str]:
    """A polyline of axis-parallel segments ending in an arrowhead along its last segment."""
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    (x0, y0), (x1, y1) = points[-2], points[-1]
    dx, dy = (x1 > x0) - (x1 < x0), (y1 > y0) - (y1 < y0)
    head = [(x1, y1), (x1 - 7 * dx - 4 * dy, y1 - 7 * dy - 4 * dx), (x1 - 7 * dx + 4 * dy, y1 - 7 * dy + 4 * dx)]
    return [f'<polyline class="arrow" points="{_points(points)}" fill="none" stroke="{color}" '
            f'stroke-width="1.4"{dash}/>', f'<polygon points="{_points(head)}" fill="{color}"/>']


def _points(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:g},{y:g}" for x, y in points)


def _stage_box(i: int, stage: StageConfig, row: dict[str, Any], fed_by: int | None) -> _Box:
    parallel = BLOCK_SPECS[stage.block].kernels == "parallel"
    details = [f"kernels {row['kernels']}" + (" in parallel" if parallel else "")]
    if stage.stride > 1:
        details.append(f"stride {stage.stride}")
    if stage.se_reduction is not None:
        details.append(f"SE r={stage.se_reduction}" + (f" + aux {fed_by} logits" if fed_by is not None else ""))
    after = _pooling(stage.pool)
    if stage.dropout:
        after.append(f"dropout {stage.dropout:g}" + (" (spatial)" if stage.spatial_dropout else ""))
    if stage.shortcut == "avgpool":
        after.append("avgpool shortcut")
    lines: list[str | _Box] = [f"stage {i} · {stage.block} · {stage.channels} ch × {stage.depth}", " · ".join(details)]
    if after:
        lines.append(" · ".join(after))
    if row["attention"] is not None:
        lines.append(_Box("attention", f"stages.{i}.attention", [f"attention: {row['attention']}"], bold_first=False))
    lines.append(f"out {row['output']} · {_short(row['params'])} params")
    return _Box("stage", f"stages.{i}", lines)


def _aux_box(j: int, cfg: ArchConfig, params: int, feeds: list[int]) -> _Box:
    aux = cfg.aux[j]
    lines: list[str | _Box] = [
        f"aux head {j} · loss weight {aux.loss_weight:g}",
        f"avgpool {aux.pool_size} · conv {aux.conv_channels} · fc {aux.hidden_units} · dropout {aux.dropout:g}",
        f"out {cfg.input.num_classes} classes · {_short(params)} params",
    ]
    if feeds:
        lines.append(f"logits feed SE of stage{'s' if len(feeds) > 1 else ''} {', '.join(map(str, feeds))}")
    return _Box("aux", f"aux_heads.{j}", lines)


def _main_boxes(cfg: ArchConfig, rows: list[dict[str, Any]], fed: dict[int, int]) -> list[_Box]:
    """Input, stem, stages and head, top to bottom."""
    inp = cfg.input
    boxes = [_Box("io", "input", [f"input {_shape(inp.channels, inp.image_size)}"])]
    by_module = {row["module"]: row for row in rows}
    stem = cfg.stem
    if stem.kind != "none":
        row = by_module["stem"]
        depth = f" × {stem.depth}" if stem.kind == "conv" else ""
        details = [f"kernels {row['kernels']}", *_pooling(stem.pool)]
        boxes.append(_Box("io", "stem", [f"stem · {stem.kind} · {stem.channels} ch{depth}", " · ".join(details),
                                         f"out {row['output']} · {_short(row['params'])} params"]))
    boxes += [_stage_box(i, stage, by_module[f"stages.{i}"], fed.get(i)) for i, stage in enumerate(cfg.stages)]
    head = cfg.head
    norm = " + LayerNorm" if head.norm == "layernorm" else ""
    lines: list[str | _Box] = [f"head · {'CLS token' if head.kind == 'cls' else head.kind}{norm}"]
    mlp = [f"fc {u}" for u in head.hidden_units] + ([f"dropout {head.dropout:g}"] if head.dropout else [])
    if mlp:
        lines.append(" · ".join(mlp))
    lines.append(f"out {inp.num_classes} classes · {_short(by_module['head']['params'])} params")
    return [*boxes, _Box("io", "head", lines)]


def architecture_svg(cfg: ArchConfig, title: str | None = None, *, modules: Modules | None = None) -> str:
    """A self-contained SVG diagram of the network, top to bottom, for the dashboard and reports.

    The main column holds input, stem, one box per stage (block, width × depth, kernels,
    pooling, output shape, params; its attention as an orange badge inside, after the blocks,
    where it runs) and the head. Aux classifiers sit to the right of the stage they follow, with
    their loss weight; one that feeds SE has a dashed arrow into each later SE stage that takes
    its logits. Boxes are sized from the text they hold (`text_width`), so nothing overflows.
    `modules` is `profile(cfg).modules` when the caller already has it.
    """
    from hybridnas.models.supermodel import fed_aux

    params = _module_params(cfg, modules)
    fed = {i: feeder[0] for i, s in enumerate(cfg.stages) if s.se_reduction is not None and (feeder := fed_aux(cfg, i))}
    main = _main_boxes(cfg, _rows(cfg, params), fed)
    aux = {f"stages.{a.after_stage}": _aux_box(j, cfg, params.get(f"aux_heads.{j}", 0),
                                               sorted(i for i, k in fed.items() if k == j))
           for j, a in enumerate(cfg.aux)}

    main_w = max(_MIN_WIDTH, *(box.needed_width() for box in main))
    right = _MARGIN + main_w
    aux_x = right + _AUX_GAP
    aux_w = max((box.needed_width() for box in aux.values()), default=0)
    y = _MARGIN + 44
    for box in main:
        box.place(_MARGIN, y, main_w)
        side = aux.get(box.name)
        if side is not None:
            side.place(aux_x, y + max(0.0, box.h - side.h), aux_w)
        y += max(box.h, side.h if side is not None else 0.0) + _GAP
    height = y - _GAP + _MARGIN

    center = _MARGIN + main_w / 2
    body = [line for above, below in zip(main, main[1:])
            for line in _arrow([(center, above.y + above.h), (center, below.y)])]
    by_name = {box.name: box for box in main}
    for name, side in aux.items():
        out_y = by_name[name].y + by_name[name].h - _PAD - _LINE / 2
        body += _arrow([(right, out_y), (aux_x, out_y)], color=_STYLES["aux"][1])
        turn = side.y + side.h + 10
        for target in sorted(i for i, j in fed.items() if f"aux_heads.{j}" == side.name):
            into = by_name[f"stages.{target}"].y + _PAD + _LINE / 2
            body += _arrow([(aux_x + 14, side.y + side.h), (aux_x + 14, turn), (right + _LANE, turn),
                            (right + _LANE, into), (right, into)], color=_STYLES["aux"][1], dashed=True)
    for box in [*main, *aux.values()]:
        body += box.svg()
    if fed:
        body.append(_text(_MARGIN, height, "dashed: aux logits into the SE squeeze of later blocks", _SIZE,
                          fill=_STYLES["aux"][1]))
        height += _LINE

    title = title if title is not None else (cfg.name or "architecture")
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 3] + "..."
    stages = len(cfg.stages)
    subtitle = f"{_short(sum(params.values()))} params · {stages} stage{'' if stages == 1 else 's'}"
    width = max(aux_x + aux_w if aux else right, _MARGIN + text_width(title, _TITLE_SIZE)) + _MARGIN
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" font-family={quoteattr(FONT_FAMILY)} role="img">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width:g}" height="{height:g}" fill="#ffffff"/>',
        _text(_MARGIN, _MARGIN + 12, title, _TITLE_SIZE, bold=True),
        _text(_MARGIN, _MARGIN + 32, subtitle, _SIZE, fill="#4b5563"),
        *body, "</svg>",
    ]) + "\n"
