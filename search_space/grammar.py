"""One grammar for the entries of a space file, in `knobs:`, `training:` and `template:` alike.

An entry is one of
- a value (`aux_dropout: 0.7`, `optimizer: adamw`): fixed;
- a list (`optimizer: [sgd, adamw]`, `widths: [8, 16]`): a choice of its items. This holds in
  `knobs:` and `training:`, where no setting takes a list. A `template:` is a model config whose
  lists are part of the model (`stages: [...]`, `kernel_sizes: [3]`), so a list there stays a list;
- `{choices: [a, b, ...]}`: a choice, anywhere. It is how a template writes a choice, and how a
  choice whose options are themselves lists is written (`kernel_sizes: {choices: [[3], [5]]}`);
- `{low: L, high: H, step: S, log: true}` (step and log optional, not both): a range. It is an
  int range when L and H (and S, if given) are all written as integers (`{low: 1, high: 4}`), and
  a float range as soon as one of them is not (`{low: 0.0, high: 0.5, step: 0.1}`; write `1.0`,
  not `1`, for a float bound). Under `knobs:` the union program knows each knob's type and reads
  the bounds as it.
A choice or range in a template or `training:` may carry `name: N`: its Optuna parameter is
then N instead of its path, and entries sharing a name share one value.

The first spelling of `training:` and templates, `{int: [L, H], step: S}`, `{float: [L, H],
log: true}` and `{choice: [...]}`, is still read: `normalize_entry` rewrites it in the grammar
above (a `float:` range with integer bounds gets float bounds), so space files and studies stored
with it load to the same Optuna distributions. No setting in `training:` took a list, so reading
a list there as a choice changes no file that loaded before.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from hybridnas.common import ConfigError

if TYPE_CHECKING:
    import optuna

FORMS = ("accepted forms: a value, [a, b, ...] (a choice), {low: L, high: H, step: S, log: true} (a range), "
         "{choices: [a, b, ...]} (a choice)")
TEMPLATE_FORMS = ("accepted forms in a template: a value, {low: L, high: H, step: S, log: true} (a range), "
                  "{choices: [a, b, ...]} (a choice)")
_RANGE_KEYS = ("low", "high", "step", "log", "name")
_OLD_KEYS = ("int", "float", "choice")
# A mapping with one of these keys is an entry of the grammar, not a part of a template's config.
_MARKERS = frozenset({"low", "high", "choices", *_OLD_KEYS})


def is_choice(node: Any, lists_are_choices: bool = False) -> bool:
    """A normalized choice: `{choices: [...]}`, or a list where lists are choices."""
    return (lists_are_choices and isinstance(node, list)) or (isinstance(node, dict) and "choices" in node)


def is_range(node: Any) -> bool:
    """A normalized range `{low, high, ...}`."""
    return isinstance(node, dict) and "low" in node and "high" in node


def is_distribution(node: Any, lists_are_choices: bool = False) -> bool:
    """A normalized choice or range: something the trial is asked for."""
    return is_choice(node, lists_are_choices) or is_range(node)


def options(node: Any) -> list[Any]:
    """A normalized choice's options."""
    return node if isinstance(node, list) else node["choices"]


def param_name(node: Any, path: str) -> str:
    """The Optuna parameter a distribution is suggested under: its `name:`, else its path."""
    return node.get("name", path) if isinstance(node, dict) else path


def is_int_range(node: dict[str, Any]) -> bool:
    """The grammar's rule: an int range when low, high and step are all integers."""
    return all(_is_int(node[k]) for k in ("low", "high", "step") if k in node)


def normalize_entry(node: Any, where: str, *, lists_are_choices: bool = False) -> Any:
    """`node` written in the one grammar (old spellings rewritten), checked; a malformed entry
    raises ConfigError naming `where` and the accepted forms. With `lists_are_choices` the node
    is an entry of `knobs:` or `training:`; without, a part of a template (walked through)."""
    if isinstance(node, list) and lists_are_choices:
        return _choice({"choices": node}, where, short=True)
    if isinstance(node, dict) and (lists_are_choices or node.keys() & _MARKERS):
        return _distribution(node, where, lists_are_choices)
    if isinstance(node, dict):
        return {k: normalize_entry(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [normalize_entry(v, f"{where}.{i}") for i, v in enumerate(node)]
    return node


def _distribution(node: dict[str, Any], where: str, short: bool) -> Any:
    forms = FORMS if short else TEMPLATE_FORMS
    old = [k for k in _OLD_KEYS if k in node]
    if len(old) == 1 and not node.keys() & {"low", "high", "choices"}:
        node = _from_old_spelling(node, old[0], where)
    if "choices" in node:
        return _choice(node, where, short)
    if "low" in node and "high" in node:
        return _range(node, where, forms)
    keys = ", ".join(map(str, node))
    raise ConfigError(f"{where}: {{{keys}}} is neither a range nor a choice; {forms}")


def _from_old_spelling(node: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`{int: [L, H]}`, `{float: [L, H]}`, `{choice: [...]}` as `{low: L, high: H}` / `{choices: [...]}`."""
    rest = {k: v for k, v in node.items() if k != key}
    if key == "choice":  # the first spelling let a choice carry step and log, and ignored them
        return {"choices": node[key], **{k: v for k, v in rest.items() if k not in ("step", "log")}}
    bounds = node[key]
    numeric = (int,) if key == "int" else (int, float)
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, numeric) and not isinstance(b, bool) for b in bounds)):
        raise ConfigError(f"{where}: {key} needs [low, high] of {key}s; {FORMS}")
    if key == "float":
        if not all(_is_finite(b) for b in bounds):
            raise ConfigError(f"{where}: a range needs finite bounds and step")
        bounds = [float(b) for b in bounds]
        if _is_number(rest.get("step")):
            rest["step"] = float(rest["step"])
    elif "step" in rest and not _is_int(rest["step"]):
        raise ConfigError(f"{where}: step must be a positive int, got {rest['step']!r}")
    return {"low": bounds[0], "high": bounds[1], **rest}


def _choice(node: dict[str, Any], where: str, short: bool) -> Any:
    forms = FORMS if short else TEMPLATE_FORMS
    extra = sorted(set(node) - {"choices", "name"}, key=str)
    if extra:
        raise ConfigError(f"{where}: a choice takes only choices and name, not {', '.join(map(str, extra))}; {forms}")
    items = node["choices"]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: a choice needs a non-empty list of options; {forms}")
    _check_name(node, where)
    picked = [normalize_entry(option, where) for option in items]
    if short and "name" not in node:
        return picked
    return {"choices": picked, **({"name": node["name"]} if "name" in node else {})}


def _range(node: dict[str, Any], where: str, forms: str) -> dict[str, Any]:
    extra = sorted(set(node) - set(_RANGE_KEYS), key=str)
    if extra:
        listed = ", ".join(map(str, extra))
        raise ConfigError(f"{where}: a range takes low, high, step, log and name, not {listed}; {forms}")
    low, high, step, log = node["low"], node["high"], node.get("step"), node.get("log", False)
    if not (_is_number(low) and _is_number(high)):
        raise ConfigError(f"{where}: a range needs numbers for low and high, got {low!r} and {high!r}; {forms}")
    if step is not None and (not _is_number(step) or step <= 0):
        raise ConfigError(f"{where}: step must be a positive number, got {step!r}")
    if not all(_is_finite(v) for v in (low, high, step) if v is not None):
        raise ConfigError(f"{where}: a range needs finite bounds and step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if step is not None and log:
        raise ConfigError(f"{where}: step and log cannot be combined")
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, got {low}")
    _check_name(node, where)
    out: dict[str, Any] = {"low": low, "high": high}
    if not is_int_range(node):
        out = {"low": float(low), "high": float(high)}
    if step is not None:
        out["step"] = step if is_int_range(node) else float(step)
    if log:
        out["log"] = True
    if "name" in node:
        out["name"] = node["name"]
    return out


def _check_name(node: dict[str, Any], where: str) -> None:
    if "name" in node and (not isinstance(node["name"], str) or not node["name"]):
        raise ConfigError(f"{where}: name must be a non-empty string, got {node['name']!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A number a float holds (a 400-digit int does not)."""
    try:
        return math.isfinite(value)
    except (OverflowError, TypeError):
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def choice_label(value: Any) -> Any:
    """What Optuna is offered for an option: the value, or the JSON text of a list or mapping."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def suggest_entry(trial: optuna.Trial, node: Any, name: str) -> Any:
    """Ask the trial for one normalized distribution under `name`: the option picked (which may
    itself hold distributions) or the number drawn."""
    if is_choice(node, lists_are_choices=True):
        items = options(node)
        labels = [choice_label(o) for o in items]
        return items[labels.index(trial.suggest_categorical(name, labels))]
    if is_int_range(node):
        return trial.suggest_int(name, node["low"], node["high"], step=node.get("step", 1), log=node.get("log", False))
    return trial.suggest_float(name, node["low"], node["high"], step=node.get("step"), log=node.get("log", False))


def in_range(node: dict[str, Any], value: Any) -> bool:
    """Whether a range can produce `value` (within its bounds and on its step grid)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not node["low"] <= value <= node["high"]:
        return False
    step = node.get("step")
    return not step or abs((value - node["low"]) / step - round((value - node["low"]) / step)) <= 1e-9


def edge_values(node: Any, lists_are_choices: bool = False) -> list[Any]:
    """The values a normalized entry can take at its edges: itself, each option, or a range's ends."""
    if is_choice(node, lists_are_choices):
        return [v for option in options(node) for v in edge_values(option)]
    if is_range(node):
        return [node["low"], node["high"]]
    return [node]
