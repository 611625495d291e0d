"""The report's plotly figures: accuracy against size with the Pareto front, importances by
knob family, and Optuna's history and intermediate values."""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Callable, Sequence

import optuna
import plotly.graph_objects as go

from hybridnas.reports._report_trials import Metric, Scored

TEMPLATE = "plotly_white"
COLORS = {"complete": "#1f77b4", "pruned": "#9a9a9a", "front": "#ff7f0e", "preset": "#2ca02c", "best": "#d62728",
          "retrained": "#9467bd"}


def hover_lines(text: str, width: int = 80) -> str:
    """Plain text as plotly hover markup: escaped (plotly reads tags in it) and wrapped."""
    return "<br>".join(html.escape(line) for line in textwrap.wrap(text, width, break_long_words=False)) or "-"


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def log_ticks(low: float, high: float) -> dict[str, list]:
    """Tick values and labels for a log axis over [low, high]: 1-2-5 steps (more digits on a
    narrow range, decades only on a wide one), labelled 20k, 500k, 2M. Plotly's own labels
    every digit of a narrow range, and they overlap."""
    low, high = low / 1.3, high * 1.3
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)

    def ticks(steps: tuple[int, ...]) -> list[float]:
        return [m * 10.0 ** d for d in decades for m in steps if low <= m * 10.0 ** d <= high]

    values = ticks((1, 2, 5))
    if len(values) < 3:
        values = ticks((1, 2, 3, 4, 5, 6, 8))
    elif len(values) > 9:
        values = ticks((1,))
    return {"tickvals": values, "ticktext": [_si(v) for v in values]}


def _front(points: Sequence[tuple[float, float]], maximize: bool) -> list[tuple[float, float]]:
    """The (size, score) staircase of the points no smaller point beats."""
    sign = 1.0 if maximize else -1.0
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if not front or sign * y > sign * front[-1][1]:
            front.append((x, y))
    return front


def size_scatter(
    points: Sequence[Scored], attr: str, axis_title: str, metric: Metric, summaries: dict[int, str],
    best: int | None, retrained: Sequence[dict[str, object]] = (),
) -> go.Figure | None:
    """Score against `attr` ("params" or "macs": the `TrialRecord` property and the `retrain` row
    field; log x) of every trained trial, the Pareto front as a step line, the papers' presets
    labelled and the leaderboard's first ringed; None when no trial recorded `attr`. `retrained`:
    `retrain`'s rows (val top-1 at the longer budget), drawn apart, with the papers' presets among
    them labelled, when the metric is val top-1."""
    size = {p.trial.number: getattr(p.record, attr) for p in points}
    sized = [p for p in points if isinstance(size[p.trial.number], (int, float)) and size[p.trial.number] > 0]
    if not sized:
        return None
    fig = go.Figure()

    def add(name: str, chosen: Sequence[Scored], **style: object) -> None:
        if not chosen:
            return
        fig.add_trace(go.Scatter(
            name=name, x=[size[p.trial.number] for p in chosen], y=[p.score * metric.scale for p in chosen],
            customdata=[[p.trial.number, hover_lines(summaries.get(p.trial.number, "-")),
                         "" if p.complete else f" (its best epoch of {len(p.trial.intermediate_values)}; pruned)"]
                        for p in chosen],
            hovertemplate=(f"trial %{{customdata[0]}}<br>%{{customdata[1]}}<br>{html.escape(metric.name)} "
                           f"%{{y:{metric.fmt}}}{html.escape(metric.unit)}%{{customdata[2]}}<br>"
                           f"{html.escape(axis_title)} %{{x:,}}<extra></extra>"),
            **style,
        ))

    add("trained (COMPLETE)", [p for p in sized if p.complete], mode="markers",
        marker={"size": 9, "color": COLORS["complete"], "line": {"width": 1, "color": "white"}})
    add("pruned (best epoch)", [p for p in sized if not p.complete], mode="markers",
        marker={"size": 8, "color": COLORS["pruned"], "symbol": "circle-open", "line": {"width": 1.5}})
    front = _front([(size[p.trial.number], p.score * metric.scale) for p in sized if p.complete], metric.maximize)
    if front:
        fig.add_trace(go.Scatter(name="Pareto front", x=[x for x, _ in front], y=[y for _, y in front], mode="lines",
                                 line={"shape": "hv", "color": COLORS["front"], "width": 2}, hoverinfo="skip"))
    presets = [p for p in sized if p.record.preset]
    add("paper presets", presets, mode="markers+text", text=[str(p.record.preset) for p in presets],
        textposition="top center", textfont={"size": 11, "color": COLORS["preset"]},
        marker={"size": 14, "color": COLORS["preset"], "symbol": "star"})
    sizes = [size[p.trial.number] for p in sized]
    if retrained and metric.name == "val top-1":
        _add_retrained(fig, retrained, attr, axis_title, metric)
        sizes += [r[attr] for r in retrained]
    add(f"best: trial {best}", [p for p in sized if p.trial.number == best], mode="markers",
        marker={"size": 18, "color": "rgba(0,0,0,0)", "line": {"width": 2.5, "color": COLORS["best"]}})
    fig.update_layout(
        template=TEMPLATE, height=400, margin={"l": 60, "r": 20, "t": 40, "b": 55},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 11}},
        xaxis={"type": "log", "title": {"text": f"{axis_title} (log scale)"},
               **log_ticks(min(sizes), max(sizes))},
        yaxis={"title": {"text": metric.label}},
        hoverlabel={"align": "left"},
    )
    return fig


def _add_retrained(fig: go.Figure, rows: Sequence[dict[str, object]], attr: str, axis_title: str,
                   metric: Metric) -> None:
    """`retrain`'s rows as two traces: the search's trials (diamonds) and the papers' presets
    (stars, labelled with their names), each at its retrained val top-1."""
    epochs = sorted({str(r["epochs"]) for r in rows})
    budget = f"{'/'.join(epochs)} epochs"
    for name, chosen, marker in (
        (f"retrained ({budget})", [r for r in rows if not r.get("preset")],
         {"size": 11, "color": COLORS["retrained"], "symbol": "diamond", "line": {"width": 1, "color": "white"}}),
        (f"papers' presets, retrained ({budget})", [r for r in rows if r.get("preset")],
         {"size": 14, "color": COLORS["preset"], "symbol": "star"}),
    ):
        if not chosen:
            continue
        labels = [str(r.get("preset") or f"trial {r['trial']}") for r in chosen]
        fig.add_trace(go.Scatter(
            name=name, x=[r[attr] for r in chosen], y=[float(r["val_top1"]) * metric.scale for r in chosen],
            mode="markers+text" if chosen[0].get("preset") else "markers",
            text=labels if chosen[0].get("preset") else None, textposition="top center",
            textfont={"size": 11, "color": COLORS["preset"]}, marker=marker, customdata=labels,
            hovertemplate=(f"%{{customdata}}, retrained {budget}<br>{html.escape(metric.name)} "
                           f"%{{y:{metric.fmt}}}{html.escape(metric.unit)}<br>{html.escape(axis_title)} "
                           "%{x:,}<extra></extra>"),
        ))


def importance_chart(groups: Sequence[tuple[str, float, list[str]]], top: int = 15) -> go.Figure:
    """Horizontal bars, largest on top: each group's share of the importance and, on hover, its
    parameters."""
    shown = list(groups)[:top]
    fig = go.Figure(go.Bar(
        orientation="h", y=[html.escape(name) for name, _, _ in shown], x=[value * 100 for _, value, _ in shown],
        text=[f"{value * 100:.0f}%" for _, value, _ in shown], textposition="outside", cliponaxis=False,
        marker={"color": COLORS["complete"]},
        customdata=[hover_lines(", ".join(names[:24]) + (f", ... ({len(names)} in all)" if len(names) > 24 else ""))
                    for _, _, names in shown],
        hovertemplate="%{y}: %{x:.1f}%<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(
        template=TEMPLATE, height=70 + 30 * len(shown), margin={"l": 10, "r": 40, "t": 10, "b": 45},
        xaxis={"title": {"text": "share of the importance (%)"}, "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "automargin": True},
    )
    return fig


def history_chart(study: optuna.Study, target_name: str, target: Callable[[optuna.trial.FrozenTrial], float] | None
                  ) -> go.Figure:
    """Optuna's optimization history of the first objective."""
    import optuna.visualization as vis

    options = {} if target is None else {"target": target}
    fig = vis.plot_optimization_history(study, target_name=target_name, **options)
    fig.update_layout(height=380)
    return fig


def intermediate_chart(study: optuna.Study) -> go.Figure:
    """Optuna's per-epoch values of every trial (one line each, so no legend)."""
    import optuna.visualization as vis

    fig = vis.plot_intermediate_values(study)
    fig.update_layout(height=380, showlegend=False)
    return fig
