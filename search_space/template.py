"""Template spaces: an architecture config in which some leaves are distributions.

A leaf written as a range `{low: L, high: H, step: S, log: true}` or a choice `{choices: [a, b,
...]}` (search_space/grammar.py; the old `{int: ...}`, `{float: ...}`, `{choice: ...}` are read
too) is suggested from the trial under its dotted path (`stages.1.channels`); every other value
is copied as it is, lists included: they are the config's own (`kernel_sizes: [3]`). A choice may
hold lists or mappings (they are offered to Optuna as their JSON text) and may itself contain
distributions, which are then sampled too. A leaf may carry `name: NAME` to use that parameter
name instead of its path; leaves sharing a name share one value (Optuna returns the same answer
for a repeated name), e.g. one SE reduction for every stage.

These functions take the normalized form (`normalize_entry`), which `space_from_document` makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridnas.search_space.grammar import (
    choice_label, in_range, is_choice, is_distribution, options, param_name, suggest_entry,
)

if TYPE_CHECKING:
    import optuna


def suggest_template(trial: optuna.Trial, node: Any, path: str = "", *, lists_are_choices: bool = False) -> Any:
    """Walk the template, suggesting every distribution leaf define-by-run. `lists_are_choices`
    applies to `node` itself (an entry of `training:`), never to what it holds."""
    if is_distribution(node, lists_are_choices):
        return suggest_template(trial, suggest_entry(trial, node, param_name(node, path)), path)
    if isinstance(node, dict):
        return {k: suggest_template(trial, v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [suggest_template(trial, v, f"{path}.{i}") for i, v in enumerate(node)]
    return node


def match_template(node: Any, value: Any, path: str = "", *, lists_are_choices: bool = False) -> dict[str, Any] | None:
    """Trial params under which the template's leaves agree with `value`, or None.

    Mappings match on the template's keys only (the value may carry defaults the template
    leaves out), so callers confirm a match by suggesting with these params and comparing.
    This is how a paper preset is enqueued into a family space as a warm-start trial.
    """
    if is_choice(node, lists_are_choices):
        for option in options(node):
            inner = match_template(option, value, path)
            if inner is not None:
                return {param_name(node, path): choice_label(option), **inner}
        return None
    if is_distribution(node):
        return {param_name(node, path): value} if in_range(node, value) else None
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
