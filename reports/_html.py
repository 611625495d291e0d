"""The HTML report of a study: which architecture won, and why.

One self-contained page that opens offline: a leaderboard of the best distinct architectures
(with retrained test accuracy, latency, diagram and config), accuracy against parameters and
MACs with the Pareto front, importances grouped by knob family, the best architecture's
diagram, where the compute went (outcomes, fail reasons, workers), then Optuna's history and
intermediate values. plotly.js is embedded once, gzipped and base64-encoded (1.9 MB instead of
4.8 MB); the page unpacks it with the browser's DecompressionStream and draws the charts from
JSON. Tables and diagrams are plain HTML and SVG, readable without JavaScript.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hybridnas.objectives.study.results import trial_training
from hybridnas.objectives.retrain import companion_name, row_label
from hybridnas.objectives.study.service import study_status
from hybridnas.objectives.study.records import DEFINITION_ATTR, TrialRecord
from hybridnas.reports._architecture import architecture_summary, architecture_svg
from hybridnas.reports._report_charts import (history_chart, importance_chart, intermediate_chart, size_scatter)
from hybridnas.reports._report_importance import OTHER, grouped_importances, param_importances
from hybridnas.reports._report_trials import (
    Metric, Scored, fail_reasons, first_metric, leaderboard, outcome_rows, pareto_numbers, retrained,
    trained, worker_rows,
)
from hybridnas.training.documents import export_document

esc = html.escape


@dataclass
class _Study:
    """What every part of the page reads, gathered once."""

    study: optuna.Study
    now: datetime
    trials: list[FrozenTrial]
    metric: Metric
    points: list[Scored]
    board: list[Scored]
    front: set[int]
    retrained: dict[int, dict[str, Any]]
    baselines: list[dict[str, Any]]
    summaries: dict[int, str]

    @classmethod
    def read(cls, study: optuna.Study) -> _Study:
        trials = study.get_trials(deepcopy=False)
        points = trained(study, trials)
        summaries = {}
        for p in points:
            cfg = p.config
            if cfg is not None:
                summaries[p.trial.number] = architecture_summary(cfg)
        rows = retrained(study)
        return cls(study, datetime.now(), trials, first_metric(study), points, leaderboard(study, points),
                   pareto_numbers(study), {r["trial"]: r for r in rows if r["trial"] is not None},
                   [r for r in rows if r.get("preset")], summaries)

    @property
    def definition(self) -> dict[str, Any]:
        stored = self.study.user_attrs.get(DEFINITION_ATTR)
        return stored if isinstance(stored, dict) else {}

    @property
    def best(self) -> Scored | None:
        return self.board[0] if self.board else None

    @functools.cached_property
    def importances(self) -> tuple[dict[str, float] | str, list[tuple[str, float, list[str]]]]:
        """(per-parameter importances or why there are none, the same grouped by knob family)."""
        importances = param_importances(self.study, self.trials)
        return importances, ([] if isinstance(importances, str) else grouped_importances(importances, self.study))


def _figures(s: _Study) -> list[tuple[str, str, Any]]:
    """(section id, heading, figure or note) for every chart of the page."""
    charts: list[tuple[str, str, Any]] = []
    best = s.best.trial.number if s.best else None
    costs = [("params", "parameters"), ("macs", "MACs per image")]
    if any(p.record.latency_ms_batch1 is not None for p in s.points):
        costs.append(("latency_ms_batch1", "latency at batch 1 (ms)"))
    for attr, axis in costs:
        rows = [r for r in (*s.retrained.values(), *s.baselines) if r.get(attr) is not None]
        fig = size_scatter(s.points, attr, axis, s.metric, s.summaries, best, rows)
        note = (f"no trained trial recorded its {axis} yet" if s.points else "no trained trial yet")
        charts.append(("size", f"{s.metric.name} against {axis}", fig if fig is not None else note))
    charts.append(("importance", "Importance by knob family", _importance_figure(s)))
    charts.append(("optuna", "Optimization history", _history_figure(s)))
    if any(t.intermediate_values for t in s.trials):
        charts.append(("optuna", "Intermediate values", intermediate_chart(s.study)))
    else:
        charts.append(("optuna", "Intermediate values", "no trial reported intermediate values"))
    return charts


def _importance_figure(s: _Study) -> Any:
    importances, groups = s.importances
    if isinstance(importances, str):
        return importances
    if not importances:
        return "no parameter to assess"
    if [name for name, _, _ in groups] == [OTHER]:
        # no hybridnas knob names (a plain Optuna study): one bar per parameter
        groups = [(name, value, [name]) for name, value in importances.items()]
    return importance_chart(groups)


def _history_figure(s: _Study) -> Any:
    if not any(t.state == TrialState.COMPLETE for t in s.trials):
        return "no completed trial yet"
    multi = len(s.study.directions) > 1
    return history_chart(s.study, s.metric.name, (lambda t: t.values[0]) if multi else None)


def report_figures(study: optuna.Study) -> list[tuple[str, Any]]:
    """(heading, plotly figure or a note saying why there is none) for each chart of the report."""
    return [(heading, content) for _, heading, content in _figures(_Study.read(study))]


def report_html(study: optuna.Study) -> str:
    """One self-contained page (plotly.js embedded once) saying which architecture won and why."""
    s = _Study.read(study)
    charts: dict[str, list[str]] = {}
    for number, (section, heading, content) in enumerate(_figures(s)):
        charts.setdefault(section, []).append(_chart(heading, content, number))
    body = "\n".join([
        _header(s),
        _section("leaderboard", "Leaderboard", _leaderboard(s)),
        _section("size", "Accuracy against size",
                 _note("Every trained trial; the pruner's ones at their best epoch. The step line is the Pareto "
                       "front: the most accurate trial at or below each size."
                       + (" Diamonds and stars: val top-1 after `retrain`'s longer training, of the search's "
                          "trials and of the papers' presets (labelled)." if s.retrained or s.baselines else ""))
                 + '<div class="grid">' + "".join(charts["size"]) + "</div>"),
        _section("best", "Best architecture", _best(s)),
        _section("importance", "What mattered", _importance(s, "".join(charts["importance"]))),
        _section("compute", "Where the compute went", _compute(s)),
        _section("trials", "Leaderboard trials: diagrams and configs", _trial_details(s)),
        _section("optuna", "Optuna's plots", "".join(charts["optuna"])),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(study.study_name)}: hybridnas report</title>\n<style>{_CSS}</style></head>\n"
            f"<body>\n{body}\n{_plotly_loader()}\n</body></html>\n")


# --- page parts ----------------------------------------------------------------------------------

def _section(anchor: str, heading: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(heading)}</h2>\n{content}</section>'


def _note(text: str) -> str:
    """A small paragraph of plain text, `commands` set as code."""
    return '<p class="note">' + re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text)) + "</p>"


def _chart(heading: str, content: Any, number: int) -> str:
    if isinstance(content, str):
        return f'<div class="cell"><h3>{esc(heading)}</h3><p class="empty">{esc(content)}</p></div>'
    figure = content.to_json()  # plotly escapes <, > and / in its JSON: safe inside <script>
    height = content.layout.height or 450  # held before plotly draws, so links into the page do not shift
    return (f'<div class="cell"><h3>{esc(heading)}</h3><div class="chart" data-figure="figure-{number}" '
            f'style="min-height: {height}px">'
            f'<p class="empty">chart: needs JavaScript</p></div>'
            f'<script type="application/json" id="figure-{number}">{figure}</script></div>')


def _header(s: _Study) -> str:
    d = s.definition
    space = d.get("space")
    facts = [
        f"dataset {d['dataset']}" if d.get("dataset") else "",
        f"space {space.get('name', '?')} ({space.get('kind', '?')})" if isinstance(space, dict) else "",
        f"objective {d['objective']}" if d.get("objective") else
        "objectives " + ", ".join(x.name.lower() for x in s.study.directions),
        f"up to {d['epochs']} epochs a trial" if d.get("epochs") else "",
        f"max MACs {d['max_macs']:,}" if isinstance(d.get("max_macs"), int) else "",
        f"max params {d['max_params']:,}" if isinstance(d.get("max_params"), int) else "",
    ]
    best = s.best
    if best is None:
        verdict = "No trained architecture yet."
    else:
        verdict = (f"Best: trial {best.trial.number}, {s.metric.show(best.score)}"
                   + (f": {s.summaries[best.trial.number]}" if best.trial.number in s.summaries else ""))
    nav = " ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in (
        ("leaderboard", "Leaderboard"), ("size", "Accuracy vs size"), ("best", "Best architecture"),
        ("importance", "What mattered"), ("compute", "Where the compute went"), ("trials", "Diagrams and configs"),
        ("optuna", "Optuna's plots")))
    return (f"<header><h1>{esc(s.study.study_name)} <small>hybridnas report</small></h1>"
            f'<p class="facts">{esc(" · ".join(f for f in facts if f))}</p>'
            f'<p class="verdict">{esc(verdict)}</p><nav>{nav}</nav>'
            f'<p class="note">written {esc(s.now.strftime("%Y-%m-%d %H:%M"))}</p></header>')


def _count(n: Any) -> str:
    """12,345 as '12.3 k', 4,560,000 as '4.56 M' (the exact number on hover)."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f'<span title="{n:,}">{esc(f"{n / scale:.3g} {suffix}")}</span>'
    return esc(f"{n:,}")


def _retrained_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    spread = len(row["seeds"]) > 1
    title = (f"retrained {row['epochs']} epochs, seeds {', '.join(map(str, row['seeds']))}: val top-1 "
             f"{row['val_top1'] * 100:.1f}%")
    if row["test_top1"] is None:
        return f'<span class="muted" title="{esc(title)}">val {row["val_top1"] * 100:.1f}</span>'
    interval = row.get("test_top1_ci95")
    if interval:
        title += (f"; test top-1 95% interval over {row['test_images']:,} images: "
                  f"{interval[0] * 100:.1f}-{interval[1] * 100:.1f}%")
    std = f" ± {row['test_top1_std'] * 100:.1f}" if spread else ""
    return f'<span title="{esc(title)}">{row["test_top1"] * 100:.1f}{esc(std)}</span>'


def _state_cell(s: _Study, p: Scored) -> str:
    label = "COMPLETE" if p.complete else "PRUNED"
    badges = []
    if p.trial.number in s.front:
        badges.append('<span class="badge front">Pareto</span>')
    if p.record.preset:
        badges.append(f'<span class="badge preset">{esc(str(p.record.preset))}</span>')
    return esc(label) + "".join(badges)


def _epochs(t: FrozenTrial) -> str:
    epochs = TrialRecord(t).epochs_run
    if isinstance(epochs, int):
        return str(epochs)
    return str(len(t.intermediate_values)) if t.intermediate_values else "-"


def _leaderboard(s: _Study) -> str:
    if not s.board:
        return _note("No trained trial yet: the leaderboard fills as trials complete.")
    latency = any(r.get("latency_ms_batch1") is not None for r in s.retrained.values())
    head = [("#", ""), ("trial", "click for its diagram and config"), (s.metric.label, "the search's score"),
            ("test top-1 (%)", "retrained (hybridnas retrain --test): mean over seeds"), ("params", ""),
            ("MACs", "multiply-accumulates of one image"), ("latency (ms)", "retrained, batch 1"),
            ("epochs", "trained in the search"), ("state", ""), ("architecture", ""), ("config", "")]
    rows = []
    for rank, p in enumerate(s.board, 1):
        t = p.trial
        again = s.retrained.get(t.number)
        ms = again.get("latency_ms_batch1") if again else None
        cells = [
            str(rank),
            f'<a href="#trial-{t.number}">{t.number}</a>',
            esc(s.metric.number(p.score)),
            _retrained_cell(again),
            _count(p.record.params),
            _count(p.record.macs),
            esc(f"{ms:.2f}") if isinstance(ms, (int, float)) else "-",
            esc(_epochs(t)),
            _state_cell(s, p),
            esc(s.summaries.get(t.number, "-")),
            f'<a download="{esc(_config_filename(s, t))}" href="{esc(_data_uri(_config_yaml(s, p)))}">YAML</a>',
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = ('<table class="board"><thead><tr>' + "".join(f'<th title="{esc(tip)}">{esc(h)}</th>' for h, tip in head)
             + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    distinct = len({p.record.distinct_key for p in s.points})
    notes = [f"The {len(s.board)} best of {distinct} distinct architectures trained, by {s.metric.name} "
             f"after the search's short training"
             + (", the Pareto front first" if s.front else "")
             + "; trials the pruner stopped rank below completed ones, by their best epoch. "
             "Trial numbers open the diagram and config; YAML downloads the config for "
             "`hybridnas train` (as `hybridnas export` writes it)."]
    if s.retrained:
        notes.append(f"Retrained: {len(s.retrained)} trial(s) in {companion_name(s.study.study_name)}"
                     + ("" if latency else "; no latency measured") + ".")
    elif s.definition:
        pick = "--pareto" if len(s.study.directions) > 1 else "--top 3"
        notes.append(f"Not retrained yet: `hybridnas retrain --study {s.study.study_name} {pick} --test` trains "
                     "the best longer and scores them on held-out images.")
    return table + "".join(_note(n) for n in notes) + _baselines(s)


def _baselines(s: _Study) -> str:
    """The papers' models retrained beside the trials (`retrain --presets`), same budget."""
    if not s.baselines:
        return ""
    head = ("paper preset", "test top-1 (%)", "params", "MACs", "latency (ms)", "epochs")
    rows = [[esc(row_label(r)), _retrained_cell(r), _count(r["params"]), _count(r["macs"]),
             esc(f"{r['latency_ms_batch1']:.2f}") if r.get("latency_ms_batch1") is not None else "-",
             esc(str(r["epochs"]))] for r in s.baselines]
    return ('<h3>Papers\' models, retrained the same way</h3><table class="baselines"><thead><tr>'
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
            + "</tbody></table>"
            + _note("Each preset is built at this study's input size and retrained with the trials' epochs and "
                    "seeds, with the study's fixed training settings, or, where it says tuned, with the best "
                    "recipe of its own search over the space's training settings (`retrain --tune-presets`), "
                    "so its row compares directly with the retrained trials above."))


def _config_filename(s: _Study, t: FrozenTrial) -> str:
    return f"{s.study.study_name}-trial{t.number}.yaml".replace("/", "-")


def _config_yaml(s: _Study, p: Scored) -> str:
    """The trial's config as `hybridnas export` writes it, or its parameters if it has none."""
    t, cfg = p.trial, p.config
    if cfg is None:
        return yaml.safe_dump({"params": dict(t.params)}, sort_keys=False)
    cfg = cfg.model_copy(update={"name": f"{s.study.study_name}-trial{t.number}"})
    return yaml.safe_dump(export_document(cfg, trial_training(t)), sort_keys=False)


def _data_uri(text: str) -> str:
    return "data:text/yaml;charset=utf-8," + urllib.parse.quote(text)


def _panel(s: _Study, p: Scored) -> str:
    """A trial's diagram beside what it scored and its config (YAML, downloadable)."""
    t = p.trial
    cfg = p.config
    diagram = (architecture_svg(cfg, title=f"trial {t.number}") if cfg is not None
               else _note("no recorded config to draw"))
    again = s.retrained.get(t.number)
    facts = [("search", f"{s.metric.show(p.score)} after {_epochs(t)} epoch(s), "
                        + ("COMPLETE" if p.complete else "then pruned (its best epoch)"))]
    if again:
        test = f"test top-1 {again['test_top1'] * 100:.1f}%, " if again["test_top1"] is not None else ""
        facts.append(("retrained", f"{test}val top-1 {again['val_top1'] * 100:.1f}% after {again['epochs']} epochs "
                                   f"(seeds {', '.join(map(str, again['seeds']))})"))
        if again.get("latency_ms_batch1") is not None:
            facts.append(("latency", f"{again['latency_ms_batch1']:.2f} ms at batch 1"))
    record = p.record
    for size, label in ((record.params, "parameters"), (record.macs, "MACs per image")):
        if isinstance(size, int):
            facts.append((label, f"{size:,}"))
    if record.preset:
        facts.append(("paper preset", str(record.preset)))
    if record.device:
        facts.append(("trained on", f"{record.device} ({record.worker if record.worker is not None else '?'})"))
    text = _config_yaml(s, p)
    name = _config_filename(s, t)
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return (f'<div class="panel"><div class="diagram">{diagram}</div><div>'
            f'<table class="facts">{rows}</table>'
            f'<p><a download="{esc(name)}" href="{esc(_data_uri(text))}">download {esc(name)}</a> '
            f'<span class="note">(for <code>hybridnas train</code>)</span></p><pre>{esc(text)}</pre></div></div>')


def _best(s: _Study) -> str:
    if s.best is None:
        return _note("No trained architecture yet.")
    return _panel(s, s.best)


def _importance(s: _Study, chart: str) -> str:
    importances, groups = s.importances
    intro = _note("Optuna's parameter importances (PED-ANOVA, conditional parameters included) for "
                  f"{s.metric.name} over the completed trials, summed per knob family: stage count and depth, "
                  "widths, block kinds, attention, kernels, pooling, stem, head, aux heads, training settings, "
                  "... With few trials they are rough.")
    if not isinstance(importances, dict) or not importances:
        return intro + chart
    family = {name: fam for fam, _, names in groups for name in names}

    def table(names: Sequence[str]) -> str:
        rows = "".join(
            f'<tr><td>{esc(name)}</td><td>{esc(family[name])}</td><td class="num">{importances[name] * 100:.1f}</td>'
            f'<td><span class="bar" style="width:{importances[name] * 120:.0f}px"></span></td></tr>'
            for name in names)
        return ('<table class="params"><thead><tr><th>parameter</th><th>family</th><th>importance (%)</th><th></th>'
                f"</tr></thead><tbody>{rows}</tbody></table>")

    names = list(importances)
    right = (f"<h3>Top parameters</h3>{table(names[:8])}"
             f"<details><summary>All {len(names)} parameters</summary>{table(names)}</details>")
    return intro + f'<div class="grid">{chart}<div class="cell">{right}</div></div>'


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _compute(s: _Study) -> str:
    status = study_status(s.study, now=s.now)
    outcomes = outcome_rows(s.trials, s.now)
    busy = sum(r["busy_s"] for r in outcomes)
    budget = status["budget_trials"]
    facts = [f"{len(s.trials)} trials",
             f"{status['done']} distinct architectures trained" + (f" of a budget of {budget}" if budget else ""),
             f"wall time {_duration(status['wall_time_s'])}", f"worker time {_duration(busy)}"]
    rows = "".join(
        f'<tr><td>{esc(r["label"])}</td><td class="num">{r["trials"]}</td><td class="num">'
        f'{esc(_duration(r["busy_s"]))}</td><td class="num">{100 * r["busy_s"] / (busy or 1):.0f}%</td></tr>'
        for r in outcomes if r["trials"])
    parts = [f'<p class="facts">{esc(" · ".join(facts))}</p>']
    if rows:
        parts.append('<table class="compute"><thead><tr><th>outcome</th><th>trials</th><th>worker time</th>'
                     f"<th>share</th></tr></thead><tbody>{rows}</tbody></table>")
    reasons = fail_reasons(s.trials)
    if reasons:
        parts.append("<h3>Top fail reasons</h3><ul>"
                     + "".join(f"<li>{n} × {esc(reason)}</li>" for reason, n in reasons) + "</ul>")
    workers = worker_rows(s.study, s.trials, s.now)
    if not workers:
        parts.append(_note("No trial recorded its worker (a study run by plain Optuna)."))
        return "".join(parts)
    body = "".join(_worker_row(w) for w in workers)
    parts.append("<h3>Workers</h3><table class=\"compute\"><thead><tr><th>worker</th><th>device</th><th>host</th>"
                 "<th>trials</th><th>trained</th><th>busy</th><th>trials / hour</th><th>state</th></tr></thead>"
                 f"<tbody>{body}</tbody></table>")
    return "".join(parts)


def _worker_row(w: dict[str, Any]) -> str:
    state = w["state"] + (f": {w['reason']}" if w["reason"] else "")
    cells = [esc(w["worker"]), esc(w["device"] or "-"), esc(w["host"] or "-")]
    numbers = [str(w["trials"]), str(w["trained"]), esc(_duration(w["busy_s"])),
               "-" if w["per_hour"] is None else f"{w['per_hour']:.1f}"]
    return (f'<tr class="{"died" if w["state"] == "died" else ""}">' + "".join(f"<td>{c}</td>" for c in cells)
            + "".join(f'<td class="num">{n}</td>' for n in numbers) + f"<td>{esc(state or '-')}</td></tr>")


def _trial_details(s: _Study) -> str:
    if not s.board:
        return _note("No trained trial yet.")
    return "".join(
        f'<details id="trial-{p.trial.number}"><summary>#{rank} trial {p.trial.number}: '
        f'{esc(s.summaries.get(p.trial.number, "-"))}</summary>{_panel(s, p)}</details>'
        for rank, p in enumerate(s.board, 1))


# --- plotly.js, embedded once ----------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _plotly_gzip_base64() -> str:
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 9, mtime=0)).decode("ascii")


def _plotly_loader() -> str:
    """plotly.js gzipped once into the page, unpacked by the browser, then every chart drawn;
    a link to a chart's trial opens its details."""
    config = json.dumps({"responsive": True, "displayModeBar": False})
    return f"""<script type="application/gzip;base64" id="plotly-js-gzip">{_plotly_gzip_base64()}</script>
<script>
function openTrial() {{
  const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (target && target.tagName === 'DETAILS') target.open = true;
}}
window.addEventListener('hashchange', openTrial);
openTrial();
(async () => {{
  const packed = atob(document.getElementById('plotly-js-gzip').textContent);
  const bytes = Uint8Array.from(packed, c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  window.PlotlyConfig = {{MathJaxConfig: 'local'}};
  const script = document.createElement('script');
  script.textContent = await new Response(stream).text();
  document.head.appendChild(script);
  for (const div of document.querySelectorAll('div[data-figure]')) {{
    const figure = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    div.textContent = '';
    Plotly.newPlot(div, figure.data, figure.layout, {config});
  }}
  document.body.dataset.charts = 'drawn';
}})().catch(err => {{
  for (const div of document.querySelectorAll('div[data-figure]')) div.textContent = 'chart not drawn: ' + err;
}});
</script>"""


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto;
       max-width: 1360px; padding: 8px 20px 40px; }
h1 { font-size: 22px; margin: 6px 0 2px; } h1 small { font-size: 14px; color: #777; font-weight: normal; }
h2 { font-size: 18px; margin: 26px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
h3 { font-size: 14px; margin: 10px 0 4px; }
.facts { margin: 2px 0; color: #444; } .verdict { margin: 2px 0; font-weight: 600; }
nav a { margin-right: 12px; font-size: 13px; }
.note, .muted { color: #666; font-size: 12.5px; } .note { margin: 4px 0; } .empty { color: #888; font-style: italic; }
table { border-collapse: collapse; font-size: 13px; }
th { text-align: left; background: #f3f4f6; font-weight: 600; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
tbody tr:nth-child(even) { background: #fafafa; }
table.board { width: 100%; }
table.board td:nth-child(n+3):nth-child(-n+8) { text-align: right; white-space: nowrap;
                                                 font-variant-numeric: tabular-nums; }
table.board th { white-space: nowrap; } table.board th:not(:nth-child(10)) { width: 1%; }
table.baselines td:nth-child(n+2) { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
table.board td:nth-child(9) { white-space: nowrap; } table.board td:nth-child(10) { font-size: 12.5px; }
code { font-size: 12px; background: #f3f4f6; padding: 0 3px; border-radius: 3px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.died td { color: #b91c1c; }
.badge { display: inline-block; margin-left: 4px; padding: 0 5px; border-radius: 8px; font-size: 11px; }
.badge.front { background: #ffedd5; color: #9a3412; } .badge.preset { background: #dcfce7; color: #166534; }
.grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; }
.panel { display: grid; grid-template-columns: minmax(0, auto) minmax(0, 1fr); gap: 24px; align-items: start;
         margin: 6px 0 14px; }
.diagram { overflow-x: auto; } .diagram svg { max-width: 100%; height: auto; }
table.params th, table.params td { white-space: nowrap; }
table.facts th { background: none; white-space: nowrap; color: #555; font-weight: normal; }
details { margin: 4px 0; } details > summary { cursor: pointer; }
details[id] > summary { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; max-height: 420px; overflow: auto; }
.bar { display: inline-block; height: 10px; background: #1f77b4; }
"""
