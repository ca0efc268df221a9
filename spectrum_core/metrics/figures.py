"""Plotly charts of evaluations: each takes reports (or tables) of several evaluated models."""

from __future__ import annotations

import html
import math
import textwrap

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .prediction import GROUP_SAMPLE
from .prevalence import ABOVE_ZERO
from .report import better_text, headline, metric_interval, significant
from .targets import BASE

SUPPRESSED = "#d62728"
BASE_COLOUR = "#8c8c8c"  # the base model is the reference: grey in every chart
PALETTE = ["#636efa", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]

# Each group is one figure of small multiples: every metric its own panel and axis, since the
# metrics of a group are on different scales (a loss of 3 nats beside a calibration error of 0.04).
METRIC_GROUPS = {
    "Steerability": ["steerability loss ≥ 1 (nats)", "token calibration error"],
    "Valid output coverage": ["valid share", "coverage", "uniqueness"],
    "Distributional alignment (Jensen-Shannon divergence)": ["Polis JS", "Polis JS, closest group", "AmbiEnt JS"],
    "Alignment: mode match": ["Polis mode match", "AmbiEnt mode match"],
    "Faithfulness and instruction following": ["HaluEval accuracy", "faithfulness", "constraints satisfied"],
    "Diversity of generations": ["distinct-2", "embedding diversity", "embedding diversity, per diffuse prompt"],
    "Preference and reward": ["implicit reward accuracy", "win rate vs base"],
}

# Three panels a row keep a panel wide enough for its bars and a wrapped title on the page.
PANEL_COLUMNS = 3
PANEL_HEIGHT = 280  # pixels per row of panels
PANEL_TITLE_WIDTH = 26  # characters per line of a panel's title (a third of the page's width)
HEADROOM = 0.2  # share of a panel's range kept above its tallest bar, for the value written on it
CONCEPT_LABEL_WIDTH = 34  # characters per line of a concept's name beside its bars
CONCEPT_LABEL_LINES = 3  # lines of a concept's name; the whole label is in the hover
BAR_HEIGHT = 22  # pixels per bar of the prevalence chart (one bar per model and concept)
NOTE_WIDTH = 120  # characters per line of a chart's note under its title (about the page's width)


def colours(names: list[str]) -> dict[str, str]:
    """One colour per model, the same in every chart: grey for the base, then the palette."""
    tuned = [n for n in names if n != BASE]
    return {n: BASE_COLOUR if n == BASE else PALETTE[tuned.index(n) % len(PALETTE)] for n in names}


def wrap(text: str, width: int, lines: int | None = None) -> str:
    """``text`` on lines of at most ``width`` characters, joined by <br> (plotly's line break)."""
    wrapped = textwrap.wrap(text, width) or [text]
    if lines is not None and len(wrapped) > lines:  # the last line kept says the text goes on
        last = textwrap.wrap(" ".join(wrapped[lines - 1 :]), max(width - 2, 1))[0]
        wrapped = wrapped[: lines - 1] + [last + " …"]
    return "<br>".join(wrapped)


def panel_title(metric: str) -> str:
    """The metric's full name, wrapped, and which way is better."""
    return f"{wrap(metric, PANEL_TITLE_WIDTH)}<br><span style='font-size:11px'>{better_text(metric)}</span>"


def _value_range(values: list[float]) -> list[float]:
    """A panel's axis range: zero included, and room above (below) the bars for their labels."""
    low, high = min([0.0, *values]), max([0.0, *values])
    span = (high - low) or 1.0
    return [low - HEADROOM * span if low < 0 else 0.0, high + HEADROOM * span if high > 0 else 0.0]


def _metric_bar(report: dict, metric: str, colour: str, legend: bool) -> go.Bar | None:
    """One model's bar in a metric's panel, its 95% interval drawn only where the report has one."""
    value = headline(report).get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    name, interval = report["target"], metric_interval(report, metric)
    hover = f"{name}<br>{metric}: {value:.4g}"
    error = None
    if interval is not None:
        hover += f" [{interval[0]:.4g}, {interval[1]:.4g}] (95%)"
        error = dict(type="data", symmetric=False, array=[interval[1] - value], arrayminus=[value - interval[0]])
    return go.Bar(
        x=[name],
        y=[value],
        name=name,
        legendgroup=name,
        showlegend=legend,
        offsetgroup="model",  # each model has its own x: one slot per bar, centred on its name
        marker_color=colour,
        error_y=error,
        text=[significant(value)],
        textposition="outside",
        cliponaxis=False,
        hovertext=[f"{hover}<br>{better_text(metric)}"],
        hovertemplate="%{hovertext}<extra></extra>",
    )


def metric_bars(reports: list[dict], metrics: list[str], title: str = "") -> go.Figure:
    """Small multiples: one panel per metric (its full name, which way is better, its own axis),
    in it one bar per evaluated model side by side, with the 95% interval where the report has one."""
    shown = [m for m in metrics if any(headline(r).get(m) is not None for r in reports)]
    columns = max(1, min(PANEL_COLUMNS, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=[panel_title(m) for m in shown], vertical_spacing=0.3 / rows
    )
    palette, in_legend = colours([r["target"] for r in reports]), set()
    for panel, metric in enumerate(shown):
        row, column = divmod(panel, columns)
        extent = []
        for report in reports:
            bar = _metric_bar(report, metric, palette[report["target"]], legend=report["target"] not in in_legend)
            if bar is not None:
                in_legend.add(report["target"])
                figure.add_trace(bar, row=row + 1, col=column + 1)
                extent += [bar.y[0], *(metric_interval(report, metric) or ())]
        figure.update_yaxes(range=_value_range(extent), tickformat="~g", row=row + 1, col=column + 1)
    figure.update_annotations(font_size=13)
    figure.update_layout(
        barmode="group",
        title=title,
        height=PANEL_HEIGHT * rows + 120,
        margin=dict(t=110, b=60),
        legend=dict(orientation="h", yref="container", y=0, yanchor="bottom"),
        uniformtext=dict(minsize=10, mode="show"),
    )
    return figure


def steerability_curve(reports: list[dict]) -> go.Figure:
    """Mean loss of an output given i earlier samples, per model, and the data's own floor."""
    figure = go.Figure()
    palette = colours([r["target"] for r in reports])
    for index, report in enumerate(reports):
        curve = pd.DataFrame((report.get("steerability") or {}).get("curve") or [])
        if curve.empty:
            continue
        figure.add_scatter(
            x=curve["i"],
            y=curve["loss"],
            mode="lines+markers",
            name=report["target"],
            line=dict(color=palette[report["target"]]),
            customdata=curve["outputs"],
            hovertemplate="i=%{x}: %{y:.3f} nats (%{customdata} outputs)<extra></extra>",
        )
        if index == 0:
            figure.add_scatter(
                x=curve["i"],
                y=curve["ideal_loss"],
                mode="lines",
                name="floor (−log p of the data)",
                line=dict(color="grey", dash="dash"),
            )
    figure.update_layout(
        title="In-context steerability: loss of an output given i earlier samples",
        xaxis_title="earlier samples in context (i)",
        yaxis_title="loss (nats per output)",
        height=380,
        margin=dict(t=40),
    )
    return figure


# What the prevalence chart's two panels show, and why neither is a raw mean activation: a
# difference-mode concept's value is the pooled residual's component along a direction (signed,
# and not centred: around −5 for every response is usual), and a family that holds one sums it.
PRESENT_TITLE = "Share of generations where it is present"
CHANGE_TITLE = "Change from the base model, in standard deviations"
PRESENT_NOTE = "Present: a token-mode SAE feature active (above 0)."
MEDIAN_NOTE = (
    "† A direction, a probe or a family holding either: present means above the base model's median on the same "
    "prompts (a direction's value is a signed projection with no zero point; a probe such as length is never 0), "
    "so the base is near 50%."
)
CHANGE_NOTE = (
    "Right: the paired change, tuned − base on the same prompts, over the pooled standard deviation; below 0 "
    "the tuned model shows less of the concept than the base."
)


def _concept_name(row, flagged: set) -> str:
    """A concept's name beside its bars: the decision, its label wrapped (suppressed in red, ▲ when
    it rose) and † when "present" means above the base model's median."""
    mark = (" ▲" if row.concept_id in flagged else "") + (" †" if _by_median(row) else "")
    label = html.escape(f"{row.action}: {row.label}" if row.action else str(row.label), quote=False)
    text = wrap(label, CONCEPT_LABEL_WIDTH, CONCEPT_LABEL_LINES) + mark
    return f"<span style='color:{SUPPRESSED}'>{text}</span>" if row.action == "suppress" else text


def _by_median(row) -> bool:
    """Whether "present" means above the base model's median (``prevalence.firing_threshold``)."""
    return getattr(row, "present_when", ABOVE_ZERO) != ABOVE_ZERO


def _share_bar(name: str, table: pd.DataFrame, side: str, colour, names: dict) -> go.Bar:
    """One model's share of generations with the concept present, with its 95% (Wilson) interval."""
    rate, low, high = table[f"{side}_rate"], table[f"{side}_rate_low"], table[f"{side}_rate_high"]
    when = table.get("present_when", pd.Series(ABOVE_ZERO, table.index))
    hover = [
        f"{html.escape(str(label), quote=False)}<br>{name}: {r:.0%} of generations [{lo:.0%}, {hi:.0%}]"
        f"<br>present when {w}"
        for label, r, lo, hi, w in zip(table["label"], rate, low, high, when)
    ]
    return go.Bar(
        y=table["concept_id"].map(names),
        x=rate,
        orientation="h",
        name=name,
        legendgroup=name,
        marker_color=colour,
        error_x=dict(type="data", symmetric=False, array=high - rate, arrayminus=rate - low),
        hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
    )


def _change_bar(name: str, table: pd.DataFrame, colour: str, names: dict) -> go.Bar:
    """One tuned model's paired change against the base, in standard deviations, with its 95%
    interval (the ``shift`` of the prediction scatter and of the flag on suppressed concepts)."""
    shift, low, high = table["shift"], table["shift_low"], table["shift_high"]
    hover = [
        f"{html.escape(str(label), quote=False)}<br>{name} − base: {s:+.3g} SD [{lo:+.3g}, {hi:+.3g}]"
        for label, s, lo, hi in zip(table["label"], shift, low, high)
    ]
    return go.Bar(
        y=table["concept_id"].map(names),
        x=shift,
        orientation="h",
        name=name,
        legendgroup=name,
        showlegend=False,
        marker_color=[SUPPRESSED if f else colour for f in table["flagged"]],
        error_x=dict(type="data", symmetric=False, array=high - shift, arrayminus=shift - low),
        hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
    )


def _prevalence_note(table: pd.DataFrame, tuned: bool) -> str:
    notes = [PRESENT_NOTE]
    if any(_by_median(row) for row in table.itertuples()):
        notes.append(MEDIAN_NOTE)
    if tuned:
        notes.append(CHANGE_NOTE)
    return wrap(" ".join(notes), NOTE_WIDTH)


def prevalence_figure(tables: dict[str, pd.DataFrame]) -> go.Figure:
    """Per decided concept (rows): the share of each model's generations where it is present, base
    and tuned side by side (left), and each tuned model's change from the base in standard
    deviations (right). ``tables``: tuned model → its comparison table; a table with base columns
    only (no tuned run yet) draws the base's shares alone. Suppressed concepts are named in red;
    one that rose gets ▲ and a red bar."""
    first = next(iter(tables.values()))
    tuned = {n: t for n, t in tables.items() if "tuned_rate" in t}
    flagged = {c for t in tuned.values() for c in t.loc[t["flagged"], "concept_id"]}
    names = {row.concept_id: _concept_name(row, flagged) for row in first.itertuples()}
    palette = colours([BASE, *tuned])
    figure = make_subplots(
        rows=1,
        cols=2 if tuned else 1,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=[PRESENT_TITLE, CHANGE_TITLE] if tuned else [PRESENT_TITLE],
    )
    figure.add_trace(_share_bar(BASE, first, "base", palette[BASE], names), row=1, col=1)
    for name, table in tuned.items():
        figure.add_trace(_share_bar(name, table, "tuned", palette[name], names), row=1, col=1)
        figure.add_trace(_change_bar(name, table, palette[name], names), row=1, col=2)
    figure.update_xaxes(range=[0, 1], tickformat=".0%", title_text="share of generations (95% interval)", col=1)
    if tuned:
        figure.add_vline(x=0, line=dict(color="grey", width=1), row=1, col=2)
        figure.update_xaxes(title_text="tuned − base (SD, 95% interval); < 0: less than base", col=2)
    figure.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(names.values()))
    figure.update_layout(
        barmode="group",
        title=dict(
            text="Decided concepts in generations: base vs tuned",
            subtitle=dict(text=_prevalence_note(first, bool(tuned))),
        ),
        height=len(names) * (BAR_HEIGHT * (1 + len(tuned)) + 2 * BAR_HEIGHT) + 240,
        margin=dict(t=150, b=110),
        legend=dict(orientation="h", yref="container", y=0, yanchor="bottom"),
    )
    return figure


def faithfulness_points(reports: list[dict]) -> go.Figure:
    """Faithfulness (x) against constraints satisfied (y): one point per checkpoint."""
    figure = go.Figure()
    palette = colours([r["target"] for r in reports])
    for report in reports:
        points = pd.DataFrame(report.get("faithfulness") or [])
        if points.empty:
            continue
        figure.add_scatter(
            x=points["faithfulness"],
            y=points["constraints_satisfied"],
            mode="lines+markers+text",
            text=points["checkpoint"],
            textposition="top center",
            name=report["target"],
            marker=dict(size=10, color=palette[report["target"]]),
            customdata=points["answer_accuracy"],
            hovertemplate="%{text}<br>faithfulness %{x:.3f}<br>constraints %{y:.3f}"
            "<br>HaluEval accuracy %{customdata:.3f}<extra></extra>",
        )
    figure.update_layout(
        title="Faithfulness vs instruction following (one point per checkpoint)",
        xaxis_title="faithfulness to the passage",
        yaxis_title="share of constraints satisfied",
        height=380,
        margin=dict(t=40),
    )
    return figure


def alignment_by_group(table: pd.DataFrame) -> go.Figure:
    """Polis: JS to all participants and to each opinion group, per statement (one model)."""
    polis = table[table["source"] == "polis"]
    figure = go.Figure()
    for group, frame in polis.groupby("group"):
        figure.add_box(y=frame["js"], name=group, boxpoints="all", hovertext=frame["item"])
    figure.update_layout(
        title="Polis: JS to participants overall and per opinion group",
        yaxis_title="JS (bits)",
        height=340,
        margin=dict(t=40),
    )
    return figure


def _shift_interval(table: pd.DataFrame, colour: str, **style) -> dict:
    """Error bars from a shift table's 95% interval (shift_low, shift_high)."""
    return dict(
        type="data",
        symmetric=False,
        array=table["shift_high"] - table["shift"],
        arrayminus=table["shift"] - table["shift_low"],
        color=colour,
        **style,
    )


def prediction_scatter(tables: dict[str, pd.DataFrame], summaries: dict[str, dict | None] | None = None) -> go.Figure:
    """Per tuned model, one point per predicted concept: the shift the audit predicted (x) against
    the shift its generations show (y, with the 95% interval); heads as circles, the sample of
    non-significant families as open circles, decided concepts as diamonds, suppressed ones
    red-edged; the least-squares line per model, its R² and Spearman ρ in the legend."""
    figure = go.Figure()
    for index, (name, table) in enumerate(tables.items()):
        colour = PALETTE[index % len(PALETTE)]
        summary = (summaries or {}).get(name) or {}
        legend = name
        if summary.get("r2") is not None:
            legend += f" (R² {summary['r2']:.2f}, ρ {summary['spearman']:+.2f})"
        decided = table["decided"].fillna(False).astype(bool) if "decided" in table else pd.Series(False, table.index)
        suppressed = table["action"].eq("suppress")
        sampled = table["group"].eq(GROUP_SAMPLE) if "group" in table else pd.Series(False, table.index)
        figure.add_scatter(
            x=table["predicted"],
            y=table["shift"],
            mode="markers",
            name=legend,
            marker=dict(
                color=colour,
                size=[11 if d else 7 for d in decided],
                symbol=["diamond" if d else "circle-open" if o else "circle" for d, o in zip(decided, sampled)],
                line=dict(color=[SUPPRESSED if s else colour for s in suppressed], width=2),
            ),
            error_y=_shift_interval(table, colour, thickness=1, width=0),
            customdata=table[["concept_id", "label"]].astype(str).to_numpy(),
            hovertemplate="%{customdata[0]}: %{customdata[1]}<br>predicted %{x:+.3f}, realised %{y:+.3f}"
            "<extra>" + name + "</extra>",
        )
        valid = table.dropna(subset=["predicted", "shift"])
        if summary.get("slope") is not None and len(valid):
            xs = [float(valid["predicted"].min()), float(valid["predicted"].max())]
            intercept = float(valid["shift"].mean() - summary["slope"] * valid["predicted"].mean())
            figure.add_scatter(
                x=xs,
                y=[intercept + summary["slope"] * x for x in xs],
                mode="lines",
                line=dict(color=colour, dash="dot"),
                showlegend=False,
                hoverinfo="skip",
            )
    figure.add_hline(y=0, line=dict(color="grey", width=1))
    figure.add_vline(x=0, line=dict(color="grey", width=1))
    figure.update_layout(
        title="Predicted by the audit vs realised in generations (per concept)",
        xaxis_title="predicted shift (weighted mean standardised Δ of the training pairs)",
        yaxis_title="realised shift, tuned − base (standard deviations)",
        height=460,
        margin=dict(t=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return figure


def checkpoint_curves(curves: dict[str, pd.DataFrame]) -> go.Figure:
    """Per tuned model and suppressed concept: its shift against the base model at every saved
    checkpoint and the final model, with 95% intervals (a rise after a held point = re-emerged)."""
    figure = go.Figure()
    index = 0
    for name, curve in curves.items():
        for concept_id, points in curve.sort_values("position").groupby("concept_id", sort=False):
            colour = PALETTE[index % len(PALETTE)]
            index += 1
            figure.add_scatter(
                x=points["step"],
                y=points["shift"],
                mode="lines+markers",
                name=f"{name}: {points['label'].iloc[0]}"[:80],
                line=dict(color=colour),
                error_y=_shift_interval(points, colour),
                customdata=points[["checkpoint"]].astype(str).to_numpy(),
                hovertemplate=str(concept_id) + " at %{customdata[0]}: %{y:+.3f}<extra></extra>",
            )
    figure.add_hline(y=0, line=dict(color="grey", width=1))
    figure.update_layout(
        title="Suppressed concepts over training: shift against the base model",
        xaxis_title="optimizer step",
        yaxis_title="shift, tuned − base (standard deviations)",
        height=400,
        margin=dict(t=40),
        legend=dict(orientation="h", y=-0.25),
    )
    return figure


def all_figures(
    reports: list[dict],
    prevalence: dict[str, pd.DataFrame],
    shifts: dict[str, pd.DataFrame] | None = None,
    curves: dict[str, pd.DataFrame] | None = None,
    base_prevalence: pd.DataFrame | None = None,
) -> dict[str, go.Figure]:
    """Every chart for an export, titled: the same figures as the Results page."""
    figures = {title: metric_bars(reports, metrics, title) for title, metrics in METRIC_GROUPS.items()}
    figures["Steerability curve"] = steerability_curve(reports)
    if prevalence:
        figures["Concept prevalence"] = prevalence_figure(prevalence)
    elif base_prevalence is not None and len(base_prevalence):
        figures["Concept prevalence (base model)"] = prevalence_figure({BASE: base_prevalence})
    if shifts:
        summaries = {r["target"]: r.get("prediction") for r in reports}
        figures["Predicted vs realised shifts"] = prediction_scatter(shifts, summaries)
    if curves:
        figures["Suppressed concepts over training"] = checkpoint_curves(curves)
    figures["Faithfulness vs instruction following"] = faithfulness_points(reports)
    return figures
