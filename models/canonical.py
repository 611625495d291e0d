"""One spelling per architecture: a config with the fields its model never reads left out.

Two configs that build the same model (a stem's settings when there is no stem, a pool size
with no pooling, a rate-0 dropout's kind, attention fields of other attention kinds, an
average-pool head on a 1x1 map, which is a flatten head) have the same canonical form. It is
the identity a search uses to recognise a repeated architecture, and the form `export` writes,
so an exported file says only what the model is made of. Parsing a canonical form gives back a
config that builds the same modules and state dict.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hybridnas.models.block_specs import BLOCK_SPECS, STAGE_FIELDS
from hybridnas.models.config import ArchConfig

# The attention fields each kind reads (besides `kind`); `dim` None means the stage width.
_ATTENTION_FIELDS = {
    "luong": ("scope",),
    "mhsa": ("dim", "heads", "dropout"),
    "conv_mhsa": ("heads", "depth", "mlp_ratio", "dropout", "kv_stride"),
    "transformer": ("dim", "heads", "depth", "mlp_ratio", "dropout"),
}


def _pool(pool: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "none"} if pool["kind"] == "none" else pool


def _stem(stem: dict[str, Any]) -> dict[str, Any]:
    if stem["kind"] == "none":
        return {"kind": "none"}
    used = {"kind", "channels", "kernel_sizes", "activation", "pool"} | ({"depth"} if stem["kind"] == "conv" else set())
    out = {k: v for k, v in stem.items() if k in used}
    out["pool"] = _pool(stem["pool"])
    if stem["kind"] == "conv":
        out["kernel_sizes"] = stem["kernel_sizes"][:1]  # a conv stem uses its first kernel size
    return out


def _attention(attention: dict[str, Any] | None, width: int) -> dict[str, Any] | None:
    if attention is None:
        return None
    out = {"kind": attention["kind"]}
    for field in _ATTENTION_FIELDS[attention["kind"]]:
        out[field] = width if field == "dim" and attention[field] is None else attention[field]
    return out


def _stage(stage: dict[str, Any], width: int) -> dict[str, Any]:
    spec = BLOCK_SPECS[stage["block"]]
    used = {*STAGE_FIELDS, *spec.reads}
    out = {k: v for k, v in stage.items() if k in used}
    out["pool"] = _pool(stage["pool"])
    kernels = stage["kernel_sizes"]
    if spec.kernels == "first" or (spec.kernels == "per_layer" and len(set(kernels)) == 1):
        out["kernel_sizes"] = kernels[:1]
    if "norm" in out and out["norm"] not in spec.norms:
        out["norm"] = "post"  # e.g. the multi-scale embedding has one norm after the concat either way
    if not stage["dropout"]:
        out.pop("spatial_dropout")
    for optional in ("se_reduction", "attention"):
        if out.get(optional) is None:
            out.pop(optional, None)
    if "attention" in out:
        out["attention"] = _attention(stage["attention"], width)
    return out


def canonical_config(cfg: ArchConfig) -> dict[str, Any]:
    """The config as JSON-ready data without the fields its model does not read."""
    data = cfg.model_dump(mode="json")
    out: dict[str, Any] = {"name": data["name"]} if data["name"] is not None else {}
    out["input"] = data["input"]
    out["stem"] = _stem(data["stem"])
    shapes = cfg.feature_shapes()
    out["stages"] = [_stage(stage, width) for stage, (width, _) in zip(data["stages"], shapes)]
    head = dict(data["head"])
    if head["kind"] == "avgpool" and shapes[-1][1] == 1:
        head["kind"] = "flatten"  # the same Linear on the same features; Group18's paper says flatten
    if not head["hidden_units"]:
        head.pop("activation")
    out["head"] = head
    if data["aux"]:
        out["aux"] = data["aux"]
    return out


def architecture_key(cfg: ArchConfig, training: dict[str, Any] | None = None) -> str:
    """A short digest of the canonical form (name left out) and the training settings.

    Equal keys mean the same model trained the same way: a search trains each key once.
    """
    identity = {k: v for k, v in canonical_config(cfg).items() if k != "name"}
    text = json.dumps({"architecture": identity, "training": training or {}}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
