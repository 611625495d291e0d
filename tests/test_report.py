"""`hybridnas report`: one offline page saying which architecture won and why, from real studies
(a tiny search with infeasible samples, pruning and a retrain; a two-objective search) and from
studies made by plain Optuna; one test opens it in headless Chromium."""

from __future__ import annotations

import base64
import gzip
import html
import re
import shutil
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import SCREENS, chromium, tiny_study_args
from optuna.trial import FrozenTrial, TrialState

from hybridnas.cli.main import main
from hybridnas.models import build
from hybridnas.models.presets import preset
from hybridnas.objectives.study.results import trial_config
from hybridnas.objectives.retrain import companion_name, retrain_results
from hybridnas.objectives.study.service import study_status
from hybridnas.reports import report_figures
from hybridnas.reports._architecture import architecture_summary
from hybridnas.storage import open_storage

# The tiny space's models have 0.5M to 14.5M MACs: about half of its samples are over this.
TINY_MAX_MACS = 3_000_000
# A worker's sampler seed comes from its id (HOST-PID by default), so a fixed id makes the
# searches below the same on every run: with HOST-PID, Hyperband sometimes let only one trial
# of the tiny search complete, and the page then had no importances to check. With this id the
# search completes 5 trials (the importances need 2).
REPORT_WORKER = "h-606"


def _cli(*args: object) -> None:
    try:
        main([str(a) for a in args])
    except SystemExit as exit_:
        assert not exit_.code, (args, exit_.code)


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat_interval=None))


class _Tables(HTMLParser):
    """The text of every <table class=...> cell: {class: [tables: [rows: [cells]]]}."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = []
            self.tables.setdefault(dict(attrs).get("class") or "", []).append(self._table)
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table(page: str, cls: str, index: int = 0) -> list[dict[str, str]]:
    """The rows of the index-th table of that class, as {header: cell text}."""
    header, *rows = _Tables(page).tables[cls][index]
    return [dict(zip(header, row)) for row in rows]


def _report(url: str, study: str, out: Path) -> str:
    _cli("report", "--study", study, "--storage", url, "-o", out)
    return out.read_text(encoding="utf-8")


def _trained_distinct(trials: list[FrozenTrial]) -> set[str]:
    """The architectures trials trained: COMPLETE, or pruned after an epoch; not repeats, not over a limit."""
    return {t.user_attrs["arch_key"] for t in trials
            if (t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED and t.intermediate_values)
            and "duplicate_of" not in t.user_attrs and "constraint_violation" not in t.user_attrs}


def _check_self_contained(page: str) -> None:
    """Opens offline: plotly.js embedded exactly once, nothing loaded from elsewhere."""
    assert len(page.encode()) < 5_000_000
    assert page.count('id="plotly-js-gzip"') == 1
    packed = re.search(r'<script type="application/gzip;base64" id="plotly-js-gzip">([^<]+)</script>', page)
    assert gzip.decompress(base64.b64decode(packed[1])).decode().count("plotly.js v") >= 1
    assert not re.search(r"<script[^>]* src=|<link[^>]* href=|https?://cdn", page)


@pytest.fixture(scope="module")
def searched(study_env: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny real search by one in-process worker (some samples over max_macs, Hyperband
    pruning), its two best and the paper preset chae retrained with a test score, and its report."""
    tmp = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{tmp / 'nas.db'}"
    _cli("launch", "--study", "r", "--storage", url, *tiny_study_args(6, epochs=2), "--test-subset", 200,
         "--max-macs", TINY_MAX_MACS, "--workers", 0)
    _cli("worker", "--study", "r", "--storage", url, "--threads", 1, "--worker-id", REPORT_WORKER)
    _cli("retrain", "--study", "r", "--storage", url, "--top", 2, "--epochs", 1, "--test", "--presets", "chae",
         "--workers", 0)
    _cli("worker", "--study", companion_name("r"), "--storage", url, "--threads", 1,
         "--worker-id", REPORT_WORKER)
    out = tmp / "out" / "report.html"
    _report(url, "r", out)
    return url, out


@pytest.fixture(scope="module")
def pareto_searched(study_env: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A tiny real two-objective search (accuracy, params) and its report."""
    tmp = tmp_path_factory.mktemp("pareto")
    url = f"sqlite:///{tmp / 'nas.db'}"
    _cli("launch", "--study", "mo", "--storage", url, *tiny_study_args(5, epochs=1), "--objective", "accuracy,params",
         "--workers", 0)
    _cli("worker", "--study", "mo", "--storage", url, "--threads", 1, "--worker-id", REPORT_WORKER)
    out = tmp / "report.html"
    _report(url, "mo", out)
    return url, out


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_leaderboard_of_a_real_search(searched: tuple[str, Path]) -> None:
    url, out = searched
    page = out.read_text(encoding="utf-8")
    study = _load(url, "r")
    trials = study.get_trials()
    rows = _table(page, "board")

    assert len(rows) == min(20, len(_trained_distinct(trials)))
    originals = [t for t in trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    best = max(originals, key=lambda t: (t.value, -t.number))
    assert (rows[0]["trial"], rows[0]["val top-1 (%)"]) == (str(best.number), f"{best.value * 100:.1f}")
    states = [r["state"] for r in rows]
    assert states == sorted(states, key=lambda s: s != "COMPLETE")  # completed ones first
    complete_scores = [float(r["val top-1 (%)"]) for r in rows if r["state"] == "COMPLETE"]
    assert complete_scores == sorted(complete_scores, reverse=True)

    retrained = {r["trial"]: r for r in retrain_results(_load(url, companion_name("r"))) if r["trial"] is not None}
    # `--top 2` of the COMPLETE distinct architectures; how many Hyperband lets finish depends on
    # the CPU's float arithmetic, so the count comes from the study.
    assert len(retrained) == min(2, len({t.user_attrs["arch_key"] for t in originals}))
    for row in rows:
        trial = trials[int(row["trial"])]
        assert row["architecture"] == architecture_summary(trial_config(trial))
        assert row["epochs"] == str(trial.user_attrs["epochs_run"])
        assert "undefined" not in row.values() and "nan" not in " ".join(row.values()).lower()
        again = retrained.get(trial.number)
        if again is None:
            assert (row["test top-1 (%)"], row["latency (ms)"]) == ("-", "-")
        else:
            assert row["test top-1 (%)"] == f"{again['test_top1'] * 100:.1f}"
            assert float(row["latency (ms)"]) > 0


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_retrained_presets_are_shown_beside_the_trials(searched: tuple[str, Path]) -> None:
    url, out = searched
    (row,) = _table(out.read_text(encoding="utf-8"), "baselines")
    (chae,) = [r for r in retrain_results(_load(url, companion_name("r"))) if r.get("preset")]
    model = build(preset("chae", num_classes=10, image_size=32))

    assert row["paper preset"] == "chae" and chae["params"] == sum(p.numel() for p in model.parameters())
    assert row["test top-1 (%)"] == f"{chae['test_top1'] * 100:.1f}"
    assert float(row["latency (ms)"]) == pytest.approx(chae["latency_ms_batch1"], abs=0.01)
    assert row["epochs"] == "1"


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_retrained_points_are_drawn_against_size(searched: tuple[str, Path]) -> None:
    """Both size charts put every retrained trial and preset at its retrained val top-1, the
    presets labelled with their names."""
    url, _ = searched
    rows = retrain_results(_load(url, companion_name("r")))
    for heading, figure in report_figures(_load(url, "r"))[:2]:
        attr = "params" if "parameters" in heading else "macs"
        traces = {t.name: t for t in figure.data}
        presets = traces["papers' presets, retrained (1 epochs)"]
        trials = traces["retrained (1 epochs)"]
        assert list(presets.text) == ["chae"]
        assert list(presets.x) == [r[attr] for r in rows if r.get("preset")]
        assert list(presets.y) == pytest.approx([100 * r["val_top1"] for r in rows if r.get("preset")])
        assert sorted(trials.x) == sorted(r[attr] for r in rows if not r.get("preset"))


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_configs_and_diagrams_are_embedded(searched: tuple[str, Path]) -> None:
    url, out = searched
    page = out.read_text(encoding="utf-8")
    rows = _table(page, "board")
    trials = _load(url, "r").get_trials()

    assert page.count("<svg") >= len(rows) + 1  # every leaderboard trial, and the best once more
    for row in rows:
        number = int(row["trial"])
        details = re.search(rf'<details id="trial-{number}">(.*?)</details>', page, re.S)
        assert details and f'href="#trial-{number}"' in page
        text = html.unescape(re.search(r"<pre>(.*?)</pre>", details[1], re.S)[1])
        document = yaml.safe_load(text)
        assert document["name"] == f"r-trial{number}"
        assert document["stages"] == trials[number].user_attrs["config"]["stages"]
        assert document["training"] == trials[number].user_attrs["training"]
        link = re.search(r'<a download="r-trial\d+\.yaml" href="([^"]+)"', details[1])
        assert urllib.parse.unquote(html.unescape(link[1]).split(",", 1)[1]) == text  # a data: URI, offline


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_budget_accounting_of_a_real_search(searched: tuple[str, Path]) -> None:
    url, out = searched
    page = out.read_text(encoding="utf-8")
    study = _load(url, "r")
    trials = study.get_trials()
    outcomes = {r["outcome"].split(":")[0].split(" (")[0]: int(r["trials"]) for r in _table(page, "compute", 0)}
    infeasible = sum("constraint_violation" in t.user_attrs for t in trials)
    duplicates = sum("duplicate_of" in t.user_attrs for t in trials)
    complete = sum(t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs for t in trials)

    assert infeasible >= 1, "the tiny search sampled nothing over max_macs"
    assert outcomes["infeasible"] == infeasible
    assert outcomes.get("duplicate", 0) == duplicates
    assert outcomes["trained to the end"] == complete
    assert sum(outcomes.values()) == len(trials)

    (worker,) = _table(page, "compute", 1)
    assert worker["worker"] == trials[0].user_attrs["worker"] and worker["device"] == "cpu (1 threads)"
    assert (int(worker["trials"]), int(worker["trained"])) == (len(trials), study_status(study)["done"])
    assert float(worker["trials / hour"]) > 0


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_importances_are_grouped_by_knob_family(searched: tuple[str, Path]) -> None:
    url, out = searched
    page = out.read_text(encoding="utf-8")
    complete = _load(url, "r").get_trials(states=[TrialState.COMPLETE])
    assert len(complete) >= 2, "importances need two completed trials: the fixture's search changed"
    families = {r["parameter"]: r["family"] for r in _table(page, "params", 1)}  # all parameters

    # the tiny template space names its leaves c1, c2 (stage widths), k2 (a kernel) and attention
    assert families == {name: family for name, family in
                        {"c1": "widths", "c2": "widths", "k2": "kernels", "attention": "attention: kind"}.items()
                        if name in families}
    assert set(families) >= {"c1", "c2"}
    figure = re.search(r'<h3>Importance by knob family</h3><div class="chart" data-figure="(figure-\d+)"', page)
    assert figure and '"widths"' in re.search(rf'id="{figure[1]}">(.*?)</script>', page, re.S)[1]
    assert "Hyperparameter Importances" not in page  # Optuna's raw chart is gone


@pytest.mark.integration  # a real search and retrain (module fixture)
def test_report_is_self_contained(searched: tuple[str, Path]) -> None:
    _, out = searched
    page = out.read_text(encoding="utf-8")
    _check_self_contained(page)
    for title in ("Optimization History Plot", "Intermediate Values Plot", '"Pareto front"', "parameters (log scale)",
                  "MACs per image (log scale)"):
        assert title in page


@pytest.mark.integration  # a real two-objective search
def test_two_objective_report_puts_the_pareto_front_first(pareto_searched: tuple[str, Path]) -> None:
    url, out = pareto_searched
    page = out.read_text(encoding="utf-8")
    study = _load(url, "mo")
    rows = _table(page, "board")
    front = {t.user_attrs["arch_key"] for t in study.best_trials}

    on_front = [r["state"].endswith("Pareto") for r in rows]
    assert on_front == sorted(on_front, reverse=True) and sum(on_front) == len(front)
    assert len(rows) == len(_trained_distinct(study.get_trials()))
    assert "no trial reported intermediate values" in page
    _check_self_contained(page)


def test_plain_optuna_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(study_name="single", storage=open_storage(url, heartbeat_interval=None))

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_float("x", -2, 2), trial.suggest_int("y", 0, 3)
        for epoch in range(3):
            trial.report(x * x + y + 1 / (epoch + 1), epoch)
        return x * x + y

    study.optimize(objective, n_trials=6)
    page = _report(url, "single", tmp_path / "out" / "report.html")

    rows = _table(page, "board")
    assert [int(r["trial"]) for r in rows][0] == study.best_trial.number  # minimized: lowest first
    assert {(r["params"], r["architecture"]) for r in rows} == {("-", "-")}
    assert {r["family"] for r in _table(page, "params", 1)} == {"other"}
    assert "no trained trial recorded its parameters yet" in page
    assert "No trial recorded its worker" in page
    for title in ("Optimization History Plot", "Intermediate Values Plot"):
        assert title in page
    _check_self_contained(page)


def test_plain_optuna_two_objective_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(
        study_name="multi", directions=["maximize", "minimize"], storage=open_storage(url, heartbeat_interval=None)
    )
    study.optimize(lambda t: (t.suggest_float("acc", 0, 1), t.suggest_int("params", 1, 100)), n_trials=6)
    page = _report(url, "multi", tmp_path / "report.html")

    rows = _table(page, "board")
    assert sum(r["state"].endswith("Pareto") for r in rows) == len(study.best_trials)
    assert "no trial reported intermediate values" in page
    assert "Optimization History Plot" in page


@pytest.mark.parametrize("n_trials", [0, 1])
def test_report_with_too_few_trials(tmp_path: Path, n_trials: int) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(study_name="tiny", storage=open_storage(url, heartbeat_interval=None))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
    page = _report(url, "tiny", tmp_path / "report.html")

    assert "needs at least two completed trials" in page
    if n_trials:
        assert len(_table(page, "board")) == 1 and "Optimization History Plot" in page
    else:
        assert "No trained trial yet" in page and "no completed trial yet" in page
    _check_self_contained(page)


def test_every_string_is_escaped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.create_study(study_name="<b>x</b>", storage=open_storage(url, heartbeat_interval=None))
    study.set_user_attr("hybridnas_workers", {"<i>w</i>": {"state": "died", "reason": "<script>alert(2)</script>"}})
    for value in (0.5, 0.7):
        study.enqueue_trial({"<u>p</u>": value}, user_attrs={"preset": "<s>preset</s>", "worker": "<i>w</i>"})
        study.optimize(lambda t: t.suggest_float("<u>p</u>", 0, 1), n_trials=1)
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "<script>alert(1)</script>"}))
    page = _report(url, "<b>x</b>", tmp_path / "report.html")

    for raw in ("<script>alert", "<b>x</b>", "<i>w</i>", "<u>p</u>", "<s>preset</s>"):
        assert raw not in page, raw
    for shown in ("&lt;script&gt;alert(1)", "&lt;b&gt;x&lt;/b&gt;", "&lt;i&gt;w&lt;/i&gt;", "&lt;u&gt;p&lt;/u&gt;"):
        assert shown in page, shown


@pytest.mark.integration
def test_report_renders_in_headless_chromium(
    searched: tuple[str, Path], pareto_searched: tuple[str, Path], tmp_path: Path
) -> None:
    SCREENS.mkdir(parents=True, exist_ok=True)
    for name, (_, out) in (("single", searched), ("pareto", pareto_searched)):
        browser = ["--window-size=1400,3000", f"--user-data-dir={tmp_path / name}", "--virtual-time-budget=20000"]
        dom = chromium(*browser, "--dump-dom", out.as_uri(), timeout=180)
        charts = dom.count('data-figure="figure-')
        assert 'data-charts="drawn"' in dom and charts >= 4
        assert dom.count('class="main-svg"') >= 2 * charts  # plotly drew every chart
        for row in _table(dom, "board"):
            assert not {"undefined", "NaN", ""} & set(row.values()), row

        shot = tmp_path / f"report-{name}.png"
        chromium(*browser, f"--screenshot={shot}", out.as_uri(), timeout=180)
        assert shot.stat().st_size > 50_000
        shutil.copy(shot, SCREENS / shot.name)
