"""The CLI contract of presets / summary / sample, run as the installed console script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HYBRIDNAS = Path(sys.executable).with_name("hybridnas")  # the console script of this environment

pytestmark = pytest.mark.integration  # every test runs the CLI in a new process


def run(*args, check=True):
    assert HYBRIDNAS.is_file(), f"the hybridnas console script is not installed next to {sys.executable}"
    proc = subprocess.run([str(HYBRIDNAS), *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_summary_json_reports_zureicks_trainable_parameters():
    out = json.loads(run("summary", "--preset", "zureick", "--json").stdout)
    assert out["trainable_params"] == 5_370_314
    assert out["params"] == 5_370_314
    assert out["macs"] > 0
    assert {m["module"] for m in out["modules"]} >= {"stages.0", "stages.1", "head"}


def test_summary_overrides_classes_and_size():
    out = json.loads(run("summary", "--preset", "samc", "--num-classes", "100", "--json").stdout)
    assert out["num_classes"] == 100
    assert abs(out["params"] - 1.22e6) / 1.22e6 <= 0.05


def test_presets_table_lists_every_preset():
    rows = json.loads(run("presets", "--json").stdout)
    assert {r["preset"] for r in rows} >= {"zureick", "group18", "chae", "samc", "se_r_resnet101"}


def test_readme_fidelity_table_is_what_presets_markdown_prints():
    table = run("presets", "--markdown").stdout
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert table.startswith("| preset | input, classes |")
    assert readme.count(table.splitlines()[0]) == 1
    assert table in readme, "README's fidelity table drifted: paste `hybridnas presets --markdown` over it"


def test_sample_writes_configs_that_summary_accepts(tmp_path):
    run("sample", "--space", "zureick", "--n", "3", "--seed", "5", "--out", str(tmp_path))
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == 3
    out = json.loads(run("summary", str(files[0]), "--json").stdout)
    assert out["params"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "--preset", "nope"], "unknown name 'nope'"),
        (["summary"], "exactly one of CONFIG_FILE and --preset"),
        (["summary", "/nonexistent.yaml"], "cannot read"),
        (["sample", "--space", "nope", "--n", "1"], "neither a built-in space"),
        (["summary", "--preset", "zureick", "--bogus"], "No such option"),
        (["presets", "--json", "--markdown"], "do not combine"),
    ],
)
def test_user_mistakes_are_one_line_on_stderr(args, message):
    proc = run(*args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_invalid_config_file_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [{block: conv, channels: 64, attention: {kind: mhsa, heads: 5}}]\n")
    proc = run("summary", str(path), check=False)
    assert proc.returncode == 2
    assert "stages.0.attention.heads" in proc.stderr
