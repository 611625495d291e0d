"""Parameter importances people can read: Optuna's per-parameter importances summed by knob family.

A union space has ~100 parameter names (`s2.att_depth`, `aux0.loss_weight`, ...) and a
template space names its leaves by path (`stages.1.attention.heads`) or by a short `name:`
of its own (`w2`). One chart bar per name tells nobody what mattered; one bar per family
("widths", "attention: kind") does. A family's importance is the sum of its parameters'
(normalized) importances. A template leaf with a `name:` is classified by the first path it
sits at in the study's stored space document.

| family | union-space names | template-space paths |
|---|---|---|
| stages: count and depth | `n_stages`, `sN.depth` | `stages`, `stages.N.depth` |
| widths | `sN.channels`, `sN.ms_channels` | `stages.N.channels` |
| block kinds | `sN.block`, `sN.block_first` | `stages.N.block` |
| attention: kind | `sN.attention`, `sN.scope` | `stages.N.attention`, `stages.N.attention.kind`, `.scope` |
| attention: heads and size | `sN.heads`, `sN.att_depth`, `sN.mlp_ratio`, `sN.kv_stride` | `stages.N.attention.heads`, `.depth`, `.dim`, `.mlp_ratio`, `.kv_stride` |
| kernels | `sN.kernel`, `sN.kernel_set` | `stages.N.kernel_sizes` |
| pooling and strides | `sN.pool`, `sN.pool_size`, `sN.stride` | `stages.N.pool`, `stages.N.pool.kind`, `.size`, `stages.N.stride` |
| norms and activations | `sN.norm`, `sN.residual_norm`, `sN.activation` | `stages.N.norm`, `stages.N.activation` |
| dropout | `sN.dropout`, `sN.spatial_dropout`, `sN.att_dropout` | `stages.N.dropout`, `.spatial_dropout`, `stages.N.attention.dropout` |
| squeeze-excitation | `sN.se` | `stages.N.se_reduction` |
| shortcuts | `sN.shortcut` | `stages.N.shortcut` |
| stem | `stem`, `stem.*` | `stem.*` |
| head | `head`, `head_cls`, `head_hidden`, `head_dropout` | `head.*` |
| aux heads | `auxN`, `auxN.loss_weight`, `auxN.feeds` | `aux`, `aux.*` |
| training settings | `training.*` | `training.*` |
| other | any other name (a study made by plain Optuna) | |
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hybridnas.common import ConfigError
from hybridnas.objectives.study.records import DEFINITION_ATTR
from hybridnas.search_space import space_from_document
from hybridnas.search_space.grammar import is_choice, is_distribution, options

OTHER = "other"
STAGES = "stages: count and depth"
ATTENTION_KIND = "attention: kind"
ATTENTION_SIZE = "attention: heads and size"
DROPOUT = "dropout"
POOLING = "pooling and strides"

# What a stage-level name part (after `sN.` or `stages.N.`) selects.
_STAGE_KEYS = {
    "depth": STAGES,
    "channels": "widths", "ms_channels": "widths",
    "block": "block kinds", "block_first": "block kinds",
    "attention": ATTENTION_KIND, "scope": ATTENTION_KIND,
    "heads": ATTENTION_SIZE, "att_depth": ATTENTION_SIZE, "mlp_ratio": ATTENTION_SIZE, "kv_stride": ATTENTION_SIZE,
    "kernel": "kernels", "kernel_set": "kernels", "kernel_sizes": "kernels",
    "pool": POOLING, "pool_size": POOLING, "stride": POOLING,
    "norm": "norms and activations", "residual_norm": "norms and activations", "activation": "norms and activations",
    "dropout": DROPOUT, "spatial_dropout": DROPOUT, "att_dropout": DROPOUT,
    "se": "squeeze-excitation", "se_reduction": "squeeze-excitation",
    "shortcut": "shortcuts",
}
# Whole-model knobs, by the name's first part.
_PREFIXES = ((re.compile(r"stem"), "stem"), (re.compile(r"head(_[a-z]+)?"), "head"),
             (re.compile(r"aux\d*"), "aux heads"), (re.compile(r"training"), "training settings"))
_UNION_STAGE = re.compile(r"s\d+")


def template_aliases(space: Any) -> dict[str, str]:
    """{leaf name: first path it sits at} for the `name:` leaves of a template space document
    (a choice's options sit at the choice's own path, as `suggest_template` walks them)."""
    aliases: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if is_distribution(node):
            if isinstance(node.get("name"), str):
                aliases.setdefault(node["name"], path)
            if is_choice(node):
                for option in options(node):
                    walk(option, path)
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}.{i}" if path else str(i))

    try:
        space = space_from_document(space).document  # a study stored in the old spelling too
    except ConfigError:
        return aliases
    walk(space.get("template"), "")
    walk(space.get("training"), "training")
    return aliases


def param_family(name: str, aliases: dict[str, str] | None = None) -> str:
    """The knob family of a parameter name (union name, template path or template leaf name)."""
    parts = (aliases or {}).get(name, name).split(".")
    if parts[0] in ("n_stages", "stages") and len(parts) == 1:
        return STAGES
    for prefix, family in _PREFIXES:
        if prefix.fullmatch(parts[0]):
            return family
    if _UNION_STAGE.fullmatch(parts[0]):
        parts = parts[1:]
    elif parts[0] == "stages" and len(parts) > 2 and parts[1].isdigit():
        parts = parts[2:]
    else:
        return OTHER
    if parts[0] == "attention" and len(parts) > 1:
        return {"kind": ATTENTION_KIND, "scope": ATTENTION_KIND, "dropout": DROPOUT}.get(parts[1], ATTENTION_SIZE)
    return _STAGE_KEYS.get(parts[0], OTHER)


def param_importances(study: optuna.Study, trials: Sequence[FrozenTrial]) -> dict[str, float] | str:
    """Optuna's importances (PED-ANOVA, conditional parameters included) for the first objective
    over the completed trials, or a note saying why there are none."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.params]
    if len(complete) < 2:
        return "needs at least two completed trials with parameters"
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    with warnings.catch_warnings():
        # "computes the importances ... to achieve low target values" (the sign above sees to
        # that) and "some regimes have less than 2 trials" (the page says importances of few
        # trials are rough)
        warnings.simplefilter("ignore", UserWarning)
        return optuna.importance.get_param_importances(study, target=lambda t: sign * t.values[0])


def grouped_importances(importances: dict[str, float], study: optuna.Study) -> list[tuple[str, float, list[str]]]:
    """(family, summed importance, its parameter names) per knob family, largest first."""
    definition = study.user_attrs.get(DEFINITION_ATTR)
    aliases = template_aliases(definition.get("space") if isinstance(definition, dict) else None)
    members: dict[str, list[str]] = {}
    for name in importances:
        members.setdefault(param_family(name, aliases), []).append(name)
    totals = [(family, sum(importances[n] for n in names), names) for family, names in members.items()]
    return sorted(totals, key=lambda row: (-row[1], row[0]))
