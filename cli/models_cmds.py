"""`hybridnas presets`, `summary` and `sample`: looking at architectures without training them.

Profiling imports torch, so it is imported inside the commands: `hybridnas --help` and the
commands that never profile start without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from hybridnas.cli._console import make_console
from hybridnas.cli._options import output_dir
from hybridnas.common import UsageError
from hybridnas.models.papers import PAPER_MODELS, Figure
from hybridnas.models.presets import PRESETS, preset
from hybridnas.training.settings import MAX_SEED

if TYPE_CHECKING:
    from hybridnas.models.config import ArchConfig

console = make_console()


def resolve_config(
    config_file: Optional[Path], preset_name: Optional[str], num_classes: Optional[int], image_size: Optional[int]
) -> ArchConfig:
    """The architecture named by exactly one of a config file and --preset, with input overrides."""
    if (config_file is None) == (preset_name is None):
        raise UsageError("give exactly one of CONFIG_FILE and --preset")
    from hybridnas.models.config import load_config

    if preset_name is not None:
        return preset(preset_name, num_classes=num_classes, image_size=image_size)
    cfg = load_config(config_file)
    if num_classes is None and image_size is None:
        return cfg
    return cfg.with_input(num_classes=num_classes, image_size=image_size)


ConfigArg = Annotated[Optional[Path], typer.Argument(help="Architecture config (YAML or JSON).", show_default=False)]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help=f"One of: {', '.join(PRESETS)}.")]
ClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="Override the number of classes.")]
SizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="Override the input size (pixels).")]


def fidelity_table() -> str:
    """README's fidelity table: each paper's model counted at the paper's input, ours vs the paper's figures."""
    from hybridnas.models.profile import profile

    lines = [
        "| preset | input, classes | params (ours) | paper | MACs (ours) | paper | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in PAPER_MODELS:
        prof = profile(preset(m.preset, num_classes=m.num_classes, image_size=m.image_size))
        what = " trainable" if m.trainable_only else ""
        ours = prof.trainable_params if m.trainable_only else prof.params
        source = f"{m.paper.short}, {m.where}" if m.where else m.paper.short
        lines.append(
            f"| {m.preset} | {m.image_size}, {m.num_classes} | {ours:,}{what} | {_stated(m.params, 'not stated', what)} "
            f"| {prof.macs / 1e9:.3f}G | {_stated(m.macs, '—')} | {source} |"
        )
    lines.append("")
    papers = dict.fromkeys(m.paper for m in PAPER_MODELS)
    lines += [f"- {p.short}: {p} (`papers/{p.file}`)" for p in papers]
    return "\n".join(lines) + "\n"


def _stated(figure: Figure | None, missing: str, what: str = "") -> str:
    """A paper's figure with its tolerance: '21.655M ±0.5%', '≈400k ±5%', '5,370,314 trainable, exactly'."""
    if figure is None:
        return missing
    if figure.tolerance == 0:
        return f"{figure.value:,}{what}, exactly"
    return f"{'≈' if figure.approximate else ''}{_abbreviated(figure.value)}{what} ±{figure.tolerance * 100:g}%"


def _abbreviated(value: int) -> str:
    """As the papers print counts: 21.655M, 1.21M, 400k."""
    for scale, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if value >= scale:
            return f"{value / scale:.3f}".rstrip("0").rstrip(".") + unit
    return str(value)


def presets_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print README's fidelity table (ours vs the papers').")] = False,
) -> None:
    """List the papers' presets with their parameters and MACs at the paper's input size."""
    from hybridnas.models.profile import profile

    if json_out and markdown:
        raise UsageError("--json and --markdown do not combine; choose one")
    if markdown:
        print(fidelity_table(), end="")
        return
    rows = []
    for name in PRESETS:
        cfg = preset(name)
        prof = profile(cfg)
        rows.append(
            {"preset": name, "image_size": cfg.input.image_size, "num_classes": cfg.input.num_classes,
             "params": prof.params, "macs": prof.macs}
        )
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="hybridnas presets (counted at each paper's input size and class count)")
    for column in ("preset", "input", "classes", "params", "MACs"):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for r in rows:
        table.add_row(r["preset"], f"{r['image_size']}x{r['image_size']}", str(r["num_classes"]),
                      f"{r['params']:,}", f"{r['macs'] / 1e9:.3f}G")
    console.print(table)


def summary_cmd(
    config_file: ConfigArg = None,
    preset_name: PresetOpt = None,
    num_classes: ClassesOpt = None,
    image_size: SizeOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Parameters, trainable parameters and MACs (one image) with a per-module breakdown."""
    from hybridnas.models.profile import profile

    cfg = resolve_config(config_file, preset_name, num_classes, image_size)
    prof = profile(cfg)
    if json_out:
        print(json.dumps({"name": cfg.name, "image_size": cfg.input.image_size,
                          "num_classes": cfg.input.num_classes, **prof.as_dict()}, indent=2))
        return
    table = Table(title=f"{cfg.name or 'config'} at {cfg.input.image_size}x{cfg.input.image_size}, "
                        f"{cfg.input.num_classes} classes")
    table.add_column("module")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    for m in prof.modules:
        table.add_row(str(m["module"]), f"{m['params']:,}", f"{m['macs']:,}")
    table.add_row("total", f"{prof.params:,}", f"{prof.macs:,}", style="bold")
    console.print(table)
    console.print(f"trainable parameters: {prof.trainable_params:,}")


def sample_cmd(
    space: Annotated[str, typer.Option("--space", help="A built-in space name or a space YAML file.")],
    n: Annotated[int, typer.Option("--n", min=1, max=100_000, help="How many configs to write.")] = 10,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="RandomSampler seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", callback=output_dir, help="Directory for the YAML files.")] = Path("samples"),
    num_classes: ClassesOpt = None,
    image_size: SizeOpt = None,
    print_space: Annotated[bool, typer.Option(
        "--print-space", help="Print the space file in the one range and choice syntax instead (to migrate it).")] = False,
) -> None:
    """Write N configs drawn from a search space with Optuna's RandomSampler, or print the space."""
    from hybridnas.search_space import format_space, load_space

    if print_space:
        typer.echo(format_space(load_space(space)), nl=False)
        return
    import optuna

    from hybridnas.models.config import dump_config
    from hybridnas.search_space import sample_configs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configs = sample_configs(load_space(space), n, seed=seed, num_classes=num_classes, image_size=image_size)
    out.mkdir(parents=True, exist_ok=True)
    for i, cfg in enumerate(configs):
        dump_config(cfg, out / f"sample_{i:04d}.yaml")
    console.print(f"wrote {len(configs)} configs to {out}/")


def register(app: typer.Typer) -> None:
    app.command("presets")(presets_cmd)
    app.command("summary")(summary_cmd)
    app.command("sample")(sample_cmd)
