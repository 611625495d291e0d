"""Template spaces: an architecture config in which some leaves are distributions.

A leaf written as `{int: [low, high], step: s}`, `{float: [low, high], step: s, log: bool}` or
`{choice: [a, b, ...]}` is suggested from the trial under its dotted path (`stages.1.channels`);
every other value is copied as it is. A choice may hold lists or mappings (they are offered to
Optuna as their JSON text) and may itself contain distributions, which are then sampled too.
A leaf may carry `name: NAME` to use that parameter name instead of its path; leaves sharing
a name share one value (Optuna returns the same answer for a repeated name), e.g. one SE
reduction for every stage.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

DISTRIBUTION_KEYS = ("int", "float", "choice")


def is_distribution(node: Any) -> bool:
    return isinstance(node, dict) and len(set(node) & set(DISTRIBUTION_KEYS)) == 1


def _choice_label(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def suggest_template(trial: optuna.Trial, node: Any, path: str = "") -> Any:
    """Walk the template, suggesting every distribution leaf define-by-run."""
    if is_distribution(node):
        return suggest_template(trial, _suggest_leaf(trial, node, node.get("name", path)), path)
    if isinstance(node, dict):
        return {k: suggest_template(trial, v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [suggest_template(trial, v, f"{path}.{i}") for i, v in enumerate(node)]
    return node


def _suggest_leaf(trial: optuna.Trial, leaf: dict[str, Any], name: str) -> Any:
    if "choice" in leaf:
        options = leaf["choice"]
        labels = [_choice_label(o) for o in options]
        picked = trial.suggest_categorical(name, labels)
        return options[labels.index(picked)]
    low, high = leaf["int"] if "int" in leaf else leaf["float"]
    if "int" in leaf:
        return trial.suggest_int(name, low, high, step=leaf.get("step", 1), log=leaf.get("log", False))
    return trial.suggest_float(name, low, high, step=leaf.get("step"), log=leaf.get("log", False))


def check_template(node: Any, path: str = "") -> list[str]:
    """Problems with the distribution leaves themselves, as 'path: reason'."""
    problems: list[str] = []
    where = path or "<root>"
    if is_distribution(node):
        if "choice" in node:
            if not isinstance(node["choice"], list) or not node["choice"]:
                problems.append(f"{where}: choice needs a non-empty list")
            else:
                for option in node["choice"]:
                    problems += check_template(option, path)
        else:
            kind = "int" if "int" in node else "float"
            bounds = node[kind]
            numeric = (int,) if kind == "int" else (int, float)
            if (not isinstance(bounds, list) or len(bounds) != 2
                    or not all(isinstance(b, numeric) and not isinstance(b, bool) for b in bounds)):
                problems.append(f"{where}: {kind} needs [low, high] of {kind}s")
            elif bounds[0] > bounds[1]:
                problems.append(f"{where}: low {bounds[0]} is above high {bounds[1]}")
            elif node.get("log") and bounds[0] <= 0:
                problems.append(f"{where}: a log scale needs low > 0, got {bounds[0]}")
            step = node.get("step")
            if step is not None and (isinstance(step, bool) or not isinstance(step, numeric) or step <= 0):
                problems.append(f"{where}: step must be a positive {kind}, got {step!r}")
            elif step is not None and node.get("log"):
                problems.append(f"{where}: step and log cannot be combined")
            if not isinstance(node.get("log", False), bool):
                problems.append(f"{where}: log must be true or false")
        if not isinstance(node.get("name", ""), str) or node.get("name") == "":
            problems.append(f"{where}: name must be a non-empty string")
        extra = set(node) - set(DISTRIBUTION_KEYS) - {"step", "log", "name"}
        if extra:
            problems.append(f"{where}: unknown distribution keys {sorted(extra)}")
        return problems
    if isinstance(node, dict):
        for k, v in node.items():
            problems += check_template(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            problems += check_template(v, f"{path}.{i}")
    return problems


def match_template(node: Any, value: Any, path: str = "") -> dict[str, Any] | None:
    """Trial params under which the template's leaves agree with `value`, or None.

    Mappings match on the template's keys only (the value may carry defaults the template
    leaves out), so callers confirm a match by suggesting with these params and comparing.
    This is how a paper preset is enqueued into a family space as a warm-start trial.
    """
    if is_distribution(node):
        name = node.get("name", path)
        if "choice" in node:
            for option in node["choice"]:
                inner = match_template(option, value, path)
                if inner is not None:
                    return {name: _choice_label(option), **inner}
            return None
        low, high = node["int"] if "int" in node else node["float"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return None
        step = node.get("step")
        if step and abs(((value - low) / step) - round((value - low) / step)) > 1e-9:
            return None
        return {name: value}
    if isinstance(node, dict):
        if not isinstance(value, dict) or not set(node) <= set(value):
            return None
        params: dict[str, Any] = {}
        for k in node:
            inner = match_template(node[k], value[k], f"{path}.{k}" if path else str(k))
            if inner is None:
                return None
            params.update(inner)
        return params
    if isinstance(node, list):
        if not isinstance(value, list) or len(node) != len(value):
            return None
        params = {}
        for i, (n, v) in enumerate(zip(node, value)):
            inner = match_template(n, v, f"{path}.{i}")
            if inner is None:
                return None
            params.update(inner)
        return params
    return {} if node == value else None
