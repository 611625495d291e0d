"""Study names and user text: a name is checked where it comes in, and whatever a user named
(studies, configs, trials' fail reasons) prints exactly as written, never read as rich markup."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import TINY_CONFIG, tiny_study_args
from optuna.trial import TrialState

import hybridnas.cli
from hybridnas import search
from hybridnas.cli._console import make_console
from hybridnas.cli._progress import trial_line
from hybridnas.common import UsageError
from hybridnas.objectives.study.definition import STUDY_NAME_MAX

BAD_NAMES = ["", "   ", "a\nb", "tab\there", "nul\x00", "bell\x07", "x" * (STUDY_NAME_MAX + 1)]
# Names that are rich markup, or look like it: each must come back verbatim.
MARKUP_NAMES = ["[/x]", "[bold]b[/bold]", "[red]", "a[/]b", "\\[x]"]


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_launch_refuses_a_bad_study_name_at_once(hybridnas, tmp_path: Path, name: str) -> None:
    code, out = hybridnas("launch", "--study", name, "--storage", _url(tmp_path), *tiny_study_args(2),
                          "--workers", "0")
    assert code == 2, out
    assert out.count("\n") == 1 and out.startswith(f"error: study name {name!r}: "), out
    assert f"1 to {STUDY_NAME_MAX} printable characters" in out
    assert not (tmp_path / "nas.db").exists()  # refused before the storage was opened


@pytest.mark.parametrize("command", ["status", "report", "export", "retrain", "worker"])
def test_every_study_option_checks_the_name(hybridnas, tmp_path: Path, command: str) -> None:
    code, out = hybridnas(command, "--study", "", "--storage", _url(tmp_path))
    assert code == 2 and out.startswith("error: study name '': "), out


def test_longest_name_is_accepted(hybridnas, tmp_path: Path) -> None:
    code, out = hybridnas("launch", "--study", "x" * STUDY_NAME_MAX, "--storage", _url(tmp_path),
                          *tiny_study_args(2), "--workers", "0")
    assert code == 0, out


def test_python_api_checks_names(tmp_path: Path) -> None:
    url = _url(tmp_path)
    for call in (lambda: search.launch({"dataset": "cifar10"}, study="", storage=url, workers=0),
                 lambda: search.retrain("a\nb", url, workers=0),
                 lambda: search.load("x" * (STUDY_NAME_MAX + 1), url),
                 lambda: search.work("\x1b[2J", url)):
        with pytest.raises(UsageError, match="a study name is 1 to"):
            call()
    assert not (tmp_path / "nas.db").exists()


@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_markup_in_a_study_name_prints_verbatim(hybridnas, tmp_path: Path, name: str) -> None:
    url = _url(tmp_path)
    code, out = hybridnas("launch", "--study", name, "--storage", url, *tiny_study_args(2), "--workers", "0")
    assert code == 0, out
    assert f"created study '{name}'" in out and f"study '{name}': 0/2" in out
    code, out = hybridnas("status", "--study", name, "--storage", url)
    assert code == 0, out
    assert f"study {name} (maximize)" in out


def test_markup_in_a_config_name_prints_verbatim(hybridnas, tmp_path: Path) -> None:
    path = tmp_path / "oops.yaml"
    path.write_text(yaml.safe_dump({**TINY_CONFIG, "name": "[/oops]"}), encoding="utf-8")
    code, out = hybridnas("summary", str(path))
    assert code == 0, out
    assert "[/oops] at 32x32, 10 classes" in " ".join(out.split())


def test_markup_in_a_fail_reason_prints_verbatim() -> None:
    trial = optuna.trial.create_trial(state=TrialState.FAIL,
                                      user_attrs={"fail_reason": "[/boom] CUDA [red]out of memory",
                                                  "worker": "[w1]"})
    console = make_console()
    console.file = StringIO()
    console.print(trial_line(trial))
    printed = console.file.getvalue()
    assert "FAIL" in printed and "[/boom] CUDA [red]out of memory" in printed and "[w1]" in printed


def test_the_cli_makes_its_consoles_in_one_place() -> None:
    """Every Console comes from make_console (markup off): one made elsewhere would read user text
    as markup again."""
    cli = Path(hybridnas.cli.__file__).parent
    assert [p.name for p in cli.glob("*.py") if p.name != "_console.py" and "Console(" in p.read_text()] == []
