"""Plotly charts of evaluations: each takes reports (or tables) of several evaluated models."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .report import headline

SUPPRESSED = "#d62728"
PALETTE = ["#636efa", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880"]

METRIC_GROUPS = {
    "Steerability (lower is better)": ["steerability loss ≥ 1 (nats)", "token calibration error"],
    "Valid output coverage": ["valid share", "coverage", "uniqueness"],
    "Distributional alignment (JS, lower is better)": ["Polis JS", "Polis JS, closest group", "AmbiEnt JS"],
    "Alignment: mode match": ["Polis mode match", "AmbiEnt mode match"],
    "Faithfulness and instruction following": ["HaluEval accuracy", "faithfulness", "constraints satisfied"],
    "Diversity of generations": ["distinct-2", "embedding diversity", "embedding diversity, per diffuse prompt"],
    "Preference and reward": ["implicit reward accuracy", "win rate vs base"],
}


def metric_bars(reports: list[dict], metrics: list[str], title: str = "") -> go.Figure:
    """Grouped bars: one group per metric, one bar per evaluated model (exact values on hover)."""
    figure = go.Figure()
    for index, report in enumerate(reports):
        values = headline(report)
        shown = [m for m in metrics if values.get(m) is not None]
        figure.add_bar(
            name=report["target"],
            x=shown,
            y=[values[m] for m in shown],
            marker_color=PALETTE[index % len(PALETTE)],
            hovertemplate="%{x}: %{y:.4f}<extra>" + report["target"] + "</extra>",
        )
    figure.update_layout(
        barmode="group", title=title, height=340, margin=dict(t=40, b=40), legend=dict(orientation="h", y=-0.2)
    )
    return figure


def steerability_curve(reports: list[dict]) -> go.Figure:
    """Mean loss of an output given i earlier samples, per model, and the data's own floor."""
    figure = go.Figure()
    for index, report in enumerate(reports):
        curve = pd.DataFrame((report.get("steerability") or {}).get("curve") or [])
        if curve.empty:
            continue
        figure.add_scatter(
            x=curve["i"],
            y=curve["loss"],
            mode="lines+markers",
            name=report["target"],
            line=dict(color=PALETTE[index % len(PALETTE)]),
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


def prevalence_bars(tables: dict[str, pd.DataFrame], value: str = "mean") -> go.Figure:
    """Per decided concept: base and each tuned model's mean activation (or firing rate) with 95%
    intervals. Suppressed concepts are labelled in red; a suppressed concept that rose gets ▲."""
    figure = go.Figure()
    first = next(iter(tables.values()))
    flagged = {c for t in tables.values() for c in t.loc[t["flagged"], "concept_id"]}

    def label(row) -> str:
        mark = " ▲" if row.concept_id in flagged else ""
        text = f"{row.action}: {row.label[:40]}{mark}"
        return f"<span style='color:{SUPPRESSED}'>{text}</span>" if row.action == "suppress" else text

    names = [label(r) for r in first.itertuples()]
    y, low, high = first[f"base_{value}"], first[f"base_{value}_low"], first[f"base_{value}_high"]
    figure.add_bar(
        name="base",
        x=names,
        y=y,
        marker_color="lightgrey",
        error_y=dict(type="data", array=high - y, arrayminus=y - low),
        hovertemplate="%{x}<br>base: %{y:.4f}<extra></extra>",
    )
    for index, (name, table) in enumerate(tables.items()):
        y, low, high = table[f"tuned_{value}"], table[f"tuned_{value}_low"], table[f"tuned_{value}_high"]
        colours = [SUPPRESSED if f else PALETTE[index % len(PALETTE)] for f in table["flagged"]]
        figure.add_bar(
            name=name,
            x=names,
            y=y,
            marker_color=colours,
            error_y=dict(type="data", array=high - y, arrayminus=y - low),
            customdata=table[["difference", "difference_low", "difference_high"]].to_numpy(),
            hovertemplate="%{x}<br>" + name + ": %{y:.4f}<br>paired change %{customdata[0]:+.4f} "
            "[%{customdata[1]:+.4f}, %{customdata[2]:+.4f}]<extra></extra>",
        )
    what = "mean activation" if value == "mean" else "firing rate"
    figure.update_layout(
        barmode="group",
        title=f"Decided concepts in generations: {what}, base vs tuned (95% CI)",
        height=420,
        margin=dict(t=40, b=120),
        legend=dict(orientation="h", y=1.1),
    )
    return figure


def faithfulness_points(reports: list[dict]) -> go.Figure:
    """Faithfulness (x) against constraints satisfied (y): one point per checkpoint."""
    figure = go.Figure()
    for index, report in enumerate(reports):
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
            marker=dict(size=10, color=PALETTE[index % len(PALETTE)]),
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
    """Per tuned model, one point per family: the shift the audit predicted (x) against the shift
    its generations show (y, with the 95% interval), decided concepts as diamonds, suppressed ones
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
        figure.add_scatter(
            x=table["predicted"],
            y=table["shift"],
            mode="markers",
            name=legend,
            marker=dict(
                color=colour,
                size=[11 if d else 7 for d in decided],
                symbol=["diamond" if d else "circle" for d in decided],
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
        title="Predicted by the audit vs realised in generations (per family)",
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
) -> dict[str, go.Figure]:
    """Every chart for an export, titled."""
    figures = {title: metric_bars(reports, metrics, title) for title, metrics in METRIC_GROUPS.items()}
    figures["Steerability curve"] = steerability_curve(reports)
    if prevalence:
        figures["Concept prevalence (mean activation)"] = prevalence_bars(prevalence, "mean")
        figures["Concept prevalence (firing rate)"] = prevalence_bars(prevalence, "rate")
    if shifts:
        summaries = {r["target"]: r.get("prediction") for r in reports}
        figures["Predicted vs realised shifts"] = prediction_scatter(shifts, summaries)
    if curves:
        figures["Suppressed concepts over training"] = checkpoint_curves(curves)
    figures["Faithfulness vs instruction following"] = faithfulness_points(reports)
    return figures
