"""Hostile input: every broken architecture config or space file ends in one ConfigError line.

Hypothesis mutates the paper presets and the built-in space files (wrong types, missing and
unknown keys, absurd sizes) and feeds random bytes, deep nesting and YAML bombs, as YAML and
as JSON. Whatever happens must be either a valid result or a `ConfigError` whose message is
one line and names the field or the file -- never another exception type, never a hang.
Inputs that once broke that contract are kept as regression cases at the end.

Storage URLs are checked through the CLI: one stderr line, exit code 2, password masked.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, field_validator

from hybridnas.common import ConfigError, format_validation_error
from hybridnas.models.config import ArchConfig, load_config
from hybridnas.models.presets import PRESETS, preset
from hybridnas.search_space import BUILTIN_SPACES, SPACES_DIR, load_space, sample_configs
from hybridnas.storage import StorageError, open_storage

HYBRIDNAS = Path(sys.executable).with_name("hybridnas")
PRESET_DOCS = {name: preset(name).model_dump(mode="json") for name in PRESETS}
SPACE_DOCS = {name: yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text()) for name in BUILTIN_SPACES}
TOP_FIELDS = ("config", "input", "stem", "stages", "head", "aux", "name")
HANG_LIMIT_S = 30  # a hang guard, not a timing assertion
FUZZ = settings(max_examples=60, deadline=timedelta(seconds=20),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _write(tmp_path: Path, document: Any, fmt: str) -> Path:
    path = tmp_path / f"input.{fmt}"
    text = json.dumps(document) if fmt == "json" else yaml.safe_dump(document, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _nodes(node: Any, where: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every node below the root."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*where, key), value
        yield from _nodes(value, (*where, key))


def _set(document: Any, where: tuple, value: Any) -> Any:
    out = copy.deepcopy(document)
    parent = out
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    return out


def _delete(document: Any, where: tuple) -> Any:
    out = copy.deepcopy(document)
    parent = out
    for key in where[:-1]:
        parent = parent[key]
    del parent[where[-1]]
    return out


def assert_one_line(err: ConfigError, *names: str) -> None:
    """One non-empty line that names at least one of `names` (a field path or the file)."""
    message = str(err)
    assert message and "\n" not in message, repr(message)
    assert any(name in message for name in names), f"{message!r} names none of {names}"


def load_config_outcome(path: Path) -> ArchConfig | ConfigError:
    """load_config's result or its ConfigError; any other exception or a hang fails the test."""
    with no_hang(HANG_LIMIT_S):
        try:
            return load_config(path)
        except ConfigError as err:
            return err


def load_space_outcome(path: Path, hang_s: int = HANG_LIMIT_S) -> Any:
    """load_space and two sampled configs, or the ConfigError of either step."""
    with no_hang(hang_s):
        try:
            return sample_configs(load_space(path), 2)
        except ConfigError as err:
            return err


# --- architecture configs ---------------------------------------------------------------

WRONG_TYPES = st.one_of(st.text(max_size=8), st.integers(-(10**12), 10**12), st.floats(),
                        st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
ABSURD = {"channels": 10**9, "depth": 10**6, "image_size": 10**9, "num_classes": 10**12,
          "heads": 10**6, "size": 10**9, "kernel_sizes": [3] * 10_000, "hidden_units": [10**9],
          "after_stage": 10**9, "dropout": 1e300, "loss_weight": -1e300,
          "stages": [{"block": "conv", "channels": 8} for _ in range(1000)]}  # distinct dicts: no YAML aliases


@st.composite
def broken_configs(draw: st.DrawFn) -> tuple[dict, tuple]:
    """A preset with one change that no valid config has; returns it and the path it touched."""
    document = PRESET_DOCS[draw(st.sampled_from(sorted(PRESET_DOCS)))]
    kind = draw(st.sampled_from(["unknown_key", "container_to_scalar", "leaf_to_mapping", "absurd", "missing"]))
    if kind == "unknown_key":
        mappings = [()] + [w for w, v in _nodes(document) if isinstance(v, dict)]
        where = draw(st.sampled_from(mappings))
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).map(lambda s: "zz_" + s))
        return _set(document, (*where, key), draw(WRONG_TYPES)), (*where, key)
    if kind == "container_to_scalar":
        where = draw(st.sampled_from([w for w, v in _nodes(document) if isinstance(v, (dict, list))]))
        return _set(document, where, draw(st.sampled_from(["zz not a mapping", 7, True]))), where
    if kind == "leaf_to_mapping":
        where = draw(st.sampled_from([w for w, v in _nodes(document) if not isinstance(v, (dict, list))]))
        return _set(document, where, {"zz_unknown": [1]}), where
    if kind == "absurd":
        candidates = [w for w, _ in _nodes(document) if isinstance(w[-1], str) and w[-1] in ABSURD]
        where = draw(st.sampled_from(candidates or [("stages",)]))
        return _set(document, where, ABSURD[where[-1]]), where
    required = [("stages",)] + [w for w, _ in _nodes(document)
                                if len(w) == 3 and w[0] == "stages" and w[2] in ("block", "channels")]
    where = draw(st.sampled_from(required))
    return _delete(document, where), where


@FUZZ
@given(case=broken_configs(), fmt=st.sampled_from(["yaml", "json"]))
def test_broken_config_is_one_config_error_naming_the_field(tmp_path: Path, case: tuple[dict, tuple], fmt: str) -> None:
    document, where = case
    outcome = load_config_outcome(_write(tmp_path, document, fmt))
    assert isinstance(outcome, ConfigError), f"accepted a broken config (changed {where})"
    assert_one_line(outcome, *TOP_FIELDS, str(tmp_path))
    assert str(where[0]) in str(outcome) or "config:" in str(outcome)


@FUZZ
@given(data=st.data(), fmt=st.sampled_from(["yaml", "json"]))
def test_any_value_anywhere_is_valid_or_one_config_error(tmp_path: Path, data: st.DataObject, fmt: str) -> None:
    document = PRESET_DOCS[data.draw(st.sampled_from(sorted(PRESET_DOCS)))]
    where = data.draw(st.sampled_from([w for w, _ in _nodes(document)]))
    outcome = load_config_outcome(_write(tmp_path, _set(document, where, data.draw(WRONG_TYPES)), fmt))
    if isinstance(outcome, ConfigError):
        assert_one_line(outcome, *TOP_FIELDS, str(tmp_path))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=2048), st.text(max_size=512).map(str.encode)))
def test_random_bytes_are_one_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(raw)
    outcome = load_config_outcome(path)
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, *TOP_FIELDS, str(path))


@FUZZ
@given(raw=st.binary(min_size=1, max_size=256), position=st.integers(0, 200))
def test_non_utf8_names_the_file(tmp_path: Path, raw: bytes, position: int) -> None:
    text = yaml.safe_dump(PRESET_DOCS["zureick"]).encode()
    position = min(position, len(text))
    path = tmp_path / "latin.yaml"
    path.write_bytes(text[:position] + b"\xff" + raw + text[position:])
    outcome = load_config_outcome(path)
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, str(path))


@FUZZ
@given(depth=st.integers(1, 60), style=st.sampled_from(["flow-list", "flow-map", "json-map", "block-list"]))
def test_nesting_is_one_config_error(tmp_path: Path, depth: int, style: str) -> None:
    """Nesting within the parser's recursion limit; deeper input is a regression case below."""
    path = tmp_path / "deep.yaml"
    path.write_text(_nested(style, depth))
    outcome = load_config_outcome(path)
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, *TOP_FIELDS, str(path))


def _nested(style: str, depth: int) -> str:
    if style == "flow-list":
        return "stages: " + "[" * depth + "]" * depth
    if style == "flow-map":
        return "stages: " + "{a: " * depth + "1" + "}" * depth
    if style == "json-map":
        return '{"stages": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    return "stages:\n" + "".join("  " * (i + 1) + "-\n" for i in range(depth))


BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    + ["stages: *i"]
)


@pytest.mark.parametrize("text", [BILLION_LAUGHS, "x: &x {block: conv, channels: 8}\nstages: [*x, *x]",
                                  "stages: &s [*s]"])
def test_yaml_aliases_are_one_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    outcome = load_config_outcome(path)
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, str(path))
    assert "aliases" in str(outcome)


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['true']", "stages: !!set {a, b}",
                                  "name: 2001-12-14\nstages: [{block: conv, channels: 8}]",
                                  "stages: [\x00]", "{", "\t- x", ""])
def test_odd_yaml_is_one_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    outcome = load_config_outcome(path)
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, *TOP_FIELDS, str(path))


# --- space files ------------------------------------------------------------------------

UNION_ABSURD = {"widths": [10**9], "multiscale_widths": [10**9 * 6], "depth": {"low": 10**6, "high": 10**6},
                "head_hidden_units": [10**9], "max_flatten_hidden_features": 10**12,
                "attention_depth": {"low": 10**6, "high": 10**6}, "se_reductions": [10**9],
                "dropout": {"low": 0.9, "high": 1e300}}


@st.composite
def broken_spaces(draw: st.DrawFn) -> dict:
    """A built-in space with one change: unknown key, wrong type, absurd size or a missing key."""
    document = SPACE_DOCS[draw(st.sampled_from(sorted(SPACE_DOCS)))]
    kind = draw(st.sampled_from(["unknown_key", "container_to_scalar", "absurd", "missing"]))
    if kind == "unknown_key":
        mappings = [()] + [w for w, v in _nodes(document) if isinstance(v, dict) and w[0] in ("knobs",)]
        return _set(document, (*draw(st.sampled_from(mappings)), "zz_unknown"), 1)
    if kind == "container_to_scalar":
        where = draw(st.sampled_from([w for w, v in _nodes(document) if isinstance(v, (dict, list))]))
        return _set(document, where, "zz not a container")
    if kind == "absurd":
        if document["kind"] == "union":
            key = draw(st.sampled_from(sorted(UNION_ABSURD)))
            return _set(document, ("knobs", key), UNION_ABSURD[key])
        where = draw(st.sampled_from([w for w, v in _nodes(document)
                                      if isinstance(w[-1], str) and w[-1] in ("channels", "depth") and w[0] == "template"]))
        return _set(document, where, draw(st.sampled_from([10**9, 10**6, {"int": [10**6, 10**9]}])))
    return _delete(document, (draw(st.sampled_from(["kind", "name", "template" if "template" in document else "kind"])),))


@FUZZ
@given(document=broken_spaces(), fmt=st.sampled_from(["yaml", "json"]))
def test_broken_space_is_one_config_error(tmp_path: Path, document: dict, fmt: str) -> None:
    outcome = load_space_outcome(_write(tmp_path, document, fmt))
    assert isinstance(outcome, (ConfigError, list)), outcome
    if isinstance(outcome, ConfigError):
        assert_one_line(outcome, str(tmp_path), "config", "knobs", "template", "stages", "stem", "head", "aux")


@FUZZ
@given(raw=st.one_of(st.binary(max_size=1024), st.text(max_size=256).map(str.encode)))
def test_random_bytes_as_a_space_are_one_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(raw)
    outcome = load_space_outcome(path)
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, str(path))


# --- inputs that once escaped as other exceptions or hung (found by the fuzzing above) -----

KNOWN_CONFIG_BUGS = [
    pytest.param("stages: " + "[" * 5000 + "]" * 5000, id="deep-flow-list-RecursionError"),
    pytest.param('{"stages": ' + '{"a": ' * 2000 + "1" + "}" * 2000 + "}", id="deep-json-map-RecursionError"),
    pytest.param("input: {image_size: " + "9" * 5000 + "}\nstages: [{block: conv, channels: 8}]",
                 id="5000-digit-int-ValueError"),
]


@pytest.mark.parametrize("text", KNOWN_CONFIG_BUGS)
def test_known_config_bugs(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bug.yaml"
    path.write_text(text)
    assert isinstance(load_config_outcome(path), ConfigError)


@pytest.mark.parametrize("key", ["\n", "a\nb", "\t", ""])
def test_an_unknown_key_with_a_line_break_is_quoted_in_the_one_line_error(tmp_path: Path, key: str) -> None:
    document = copy.deepcopy(PRESET_DOCS["chae"])
    document["input"][key] = 0
    outcome = load_config_outcome(_write(tmp_path, document, "json"))
    assert isinstance(outcome, ConfigError)
    assert_one_line(outcome, "input")
    assert f"input.{key!r}: Extra inputs are not permitted" in str(outcome)


def test_a_reason_quoting_a_line_break_stays_one_line_and_keeps_its_letters() -> None:
    class Named(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def known(cls, value: str) -> str:
            raise ValueError(f"no preset named {value}")

    with pytest.raises(ValidationError) as caught:
        Named(name="café\nzürich\t")
    assert format_validation_error(caught.value) == "name: no preset named café\\nzürich\\t"


KNOWN_SPACE_BUGS = [
    pytest.param("kind: union\nname: u\nknobs: {stages: {low: 1, high: 1000000}}", id="stages-1e6-hang"),
    pytest.param("kind: union\nname: u\nknobs: {stages: {low: 5, high: 1}}", id="low-above-high-ValueError"),
    pytest.param("kind: union\nname: u\nknobs: {widths: []}", id="empty-choices-ValueError"),
    pytest.param("kind: union\nname: u\nknobs: {depth: {low: 1, high: 3, step: 0}}", id="step-0-ValueError"),
    pytest.param("kind: union\nname: u\nknobs: {heads: [0]}", id="heads-0-ZeroDivisionError"),
    pytest.param("kind: union\nname: u\nknobs: {kernel_sets: ['x-y']}", id="kernel-set-label-ValueError"),
    pytest.param("kind: template\nname: t\ntemplate: {stages: [{block: conv, channels: {int: [8, 16], step: 0}}]}",
                 id="template-step-0-ValueError"),
    pytest.param("kind: template\nname: t\ntemplate: {stages: [{block: conv, channels: {int: [8, 16], step: x}}]}",
                 id="template-step-str-TypeError"),
    pytest.param("kind: template\nname: t\ntemplate: {stages: [{block: conv, channels: {int: [8, 16], name: [1]}}]}",
                 id="template-name-list-TypeError"),
    pytest.param("kind: template\nname: t\ntemplate: "
                 "{stages: [{block: conv, channels: 8, dropout: {float: [-1, 0.5], log: true}}]}",
                 id="template-log-nonpositive-ValueError"),
]


@pytest.mark.parametrize("text", KNOWN_SPACE_BUGS)
def test_known_space_bugs(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bug.yaml"
    path.write_text(text)
    assert isinstance(load_space_outcome(path, hang_s=5), ConfigError)


# --- storage URLs -----------------------------------------------------------------------

SECRET = "SECRET-pw-4711"
BAD_URLS = {
    "bad scheme": (f"mysql://u:{SECRET}@127.0.0.1/db", "unsupported storage URL scheme"),
    "closed port": (f"postgresql://u:{SECRET}@127.0.0.1:1/db", "Connection refused"),
    "wrong database": (f"postgresql://postgres:{SECRET}@127.0.0.1:5432/no_such_db_hybridnas", "no_such_db_hybridnas"),
}


@pytest.mark.parametrize("label", sorted(BAD_URLS))
def test_bad_storage_url_in_process(label: str) -> None:
    url, reason = BAD_URLS[label]
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert reason in str(info.value) and "\n" not in str(info.value) and SECRET not in str(info.value)


@pytest.mark.integration  # the CLI in new processes
def test_bad_storage_urls_through_the_cli() -> None:
    """`hybridnas status` on each bad URL: exit 2, one stderr line, password masked (run side by side)."""
    procs = {label: subprocess.Popen([str(HYBRIDNAS), "status", "--study", "x", "--storage", url],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for label, (url, _) in BAD_URLS.items()}
    for label, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (label, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (label, err)
        assert BAD_URLS[label][1] in lines[0], (label, lines[0])
        assert SECRET not in out + err and "***" in lines[0], (label, lines[0])
