"""Plotly figures for the app. Built here, not in the pages, so they are tested without a browser."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

CHOSEN_COLOUR, REJECTED_COLOUR = "#2a9d8f", "#e76f51"


def response_lengths(pairs: pd.DataFrame) -> pd.DataFrame:
    """Characters and words of each side's response, one row per pair."""
    return pd.DataFrame(
        {
            "pair_id": pairs["pair_id"],
            "chosen_chars": pairs["chosen"].str.len(),
            "rejected_chars": pairs["rejected"].str.len(),
            "chosen_words": pairs["chosen"].str.split().str.len(),
            "rejected_words": pairs["rejected"].str.split().str.len(),
        }
    )


def length_histogram(pairs: pd.DataFrame, unit: str = "words") -> go.Figure:
    """Overlaid histograms of chosen and rejected response lengths."""
    lengths = response_lengths(pairs)
    figure = go.Figure()
    for side, colour in (("chosen", CHOSEN_COLOUR), ("rejected", REJECTED_COLOUR)):
        values = lengths[f"{side}_{unit}"]
        figure.add_trace(
            go.Histogram(
                x=values, name=f"{side} (median {values.median():.0f})", marker_color=colour, opacity=0.6, nbinsx=60
            )
        )
    figure.update_layout(
        barmode="overlay",
        xaxis_title=f"response length ({unit})",
        yaxis_title="pairs",
        legend_title_text="",
        margin=dict(t=30, b=10),
    )
    return figure


def length_scatter(pairs: pd.DataFrame, unit: str = "words") -> go.Figure:
    """Chosen vs rejected length per pair; points above the diagonal have the longer chosen side."""
    lengths = response_lengths(pairs)
    x, y = lengths[f"rejected_{unit}"], lengths[f"chosen_{unit}"]
    longer = float((y > x).mean() * 100)
    top = float(max(x.max(), y.max(), 1))
    figure = go.Figure(
        [
            go.Scattergl(
                x=x,
                y=y,
                mode="markers",
                marker=dict(size=5, opacity=0.5, color=CHOSEN_COLOUR),
                customdata=lengths["pair_id"],
                name="pair",
                hovertemplate="pair %{customdata}<br>rejected %{x}<br>chosen %{y}<extra></extra>",
            ),
            go.Scatter(
                x=[0, top],
                y=[0, top],
                mode="lines",
                line=dict(dash="dot", color="grey"),
                name="equal length",
                hoverinfo="skip",
            ),
        ]
    )
    figure.update_layout(
        xaxis_title=f"rejected ({unit})",
        yaxis_title=f"chosen ({unit})",
        title=f"chosen is longer in {longer:.0f}% of pairs",
        showlegend=False,
        margin=dict(t=40, b=10),
    )
    return figure


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def association_shift(table: pd.DataFrame, labels: dict[str, str], decided: dict[str, str]) -> go.Figure:
    """Dumbbell chart: each concept's share of pairs where chosen has more, before → after the
    plan. 0.5 means the concept no longer predicts the label; decided concepts are marked."""
    table = table.iloc[::-1]  # first row on top
    names = [
        f"{_shorten(labels.get(c, c), 44)} · {c}" + (f" [{decided[c]}]" if c in decided else "")
        for c in table["concept_id"]
    ]
    figure = go.Figure()
    for name, before, after in zip(names, table["share_before"], table["share_after"]):
        figure.add_trace(
            go.Scatter(
                x=[before, after],
                y=[name, name],
                mode="lines",
                line=dict(color="#adb5bd", width=2),
                showlegend=False,
                hoverinfo="skip",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=table["share_before"],
            y=names,
            mode="markers",
            name="before",
            marker=dict(color="#6c757d", size=9),
            hovertemplate="%{y}<br>before: %{x:.3f}<extra></extra>",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=table["share_after"],
            y=names,
            mode="markers",
            name="after the plan",
            marker=dict(color=CHOSEN_COLOUR, size=11, symbol="diamond"),
            hovertemplate="%{y}<br>after: %{x:.3f}<extra></extra>",
        )
    )
    figure.add_vline(x=0.5, line_dash="dot", line_color="#495057")
    figure.update_layout(
        xaxis=dict(title="share of differing pairs where chosen has more", range=[0, 1]),
        height=max(260, 28 * len(table) + 90),
        margin=dict(t=10, b=10, l=10, r=10),
        legend=dict(orientation="h", y=1.02, yanchor="bottom"),
    )
    return figure


def training_curves(records: list[dict], metrics: tuple[str, ...] = ("loss", "rewards_margins")) -> go.Figure:
    """Live training metrics from a run's progress log, one panel per metric, against the step
    (or the round, for ReSet's acceptance)."""
    from plotly.subplots import make_subplots

    rows = [r for r in records if any(m in r for m in metrics)]
    present = [m for m in metrics if any(m in r for r in rows)]
    figure = make_subplots(rows=1, cols=max(1, len(present)), subplot_titles=present or ["no steps yet"])
    for column, metric in enumerate(present, start=1):
        points = [(r["done"], r[metric]) for r in rows if metric in r]
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="lines+markers",
                name=metric,
                line=dict(color=CHOSEN_COLOUR if column == 1 else REJECTED_COLOUR),
                hovertemplate="step %{x}<br>%{y:.4f}<extra>" + metric + "</extra>",
            ),
            row=1,
            col=column,
        )
        stage = next(r["stage"] for r in rows if metric in r)
        figure.update_xaxes(title_text="round" if stage == "reset" else "step", row=1, col=column)
    figure.update_layout(height=280, showlegend=False, margin=dict(t=30, b=10, l=10, r=10))
    return figure


def topic_heatmap(leans: pd.DataFrame, topics: pd.DataFrame, families: pd.DataFrame) -> go.Figure:
    """Families (rows, in the order given) × prompt topics: the share of differing pairs where
    chosen has more, centred on ½ (no lean); the hover gives the 95% interval and the counts."""
    table = leans[leans["concept_id"].isin(families["concept_id"])]
    share = table.pivot(index="concept_id", columns="topic", values="share_chosen_more").reindex(families["concept_id"])
    low = table.pivot(index="concept_id", columns="topic", values="share_low").reindex(share.index)
    high = table.pivot(index="concept_id", columns="topic", values="share_high").reindex(share.index)
    count = table.pivot(index="concept_id", columns="topic", values="n_differ").reindex(share.index)
    names = dict(zip(topics["topic"], topics["label"]))
    columns = [
        f"{names.get(t, t)} ({n})"
        for t, n in zip(share.columns, topics.set_index("topic")["n_pairs"].reindex(share.columns))
    ]
    rows = [f"{label[:40]} [{cid}]" for cid, label in zip(families["concept_id"], families["label"])]
    hover = [
        [
            f"{s:.0%} chosen has more [{lo:.0%}, {hi:.0%}] of {int(n)} differing pairs"
            if n == n and n
            else "no differing pairs"
            for s, lo, hi, n in zip(srow, lrow, hrow, nrow)
        ]
        for srow, lrow, hrow, nrow in zip(share.to_numpy(), low.to_numpy(), high.to_numpy(), count.to_numpy())
    ]
    figure = go.Figure(
        go.Heatmap(
            z=share.to_numpy(),
            x=columns,
            y=rows,
            zmin=0,
            zmax=1,
            zmid=0.5,
            colorscale=[[0, REJECTED_COLOUR], [0.5, "#f7f7f7"], [1, CHOSEN_COLOUR]],
            text=hover,
            hoverinfo="text+x+y",
            colorbar=dict(title="chosen has more"),
        )
    )
    figure.update_layout(height=120 + 24 * len(rows), margin=dict(t=10, b=10), yaxis=dict(autorange="reversed"))
    return figure


def topic_lean_bars(leans: pd.DataFrame, topics: pd.DataFrame) -> go.Figure:
    """One family's lean per topic: the share where chosen has more, with its 95% interval."""
    table = leans.merge(topics[["topic", "label"]], on="topic").sort_values("topic")
    figure = go.Figure(
        go.Bar(
            x=table["label"],
            y=table["share_chosen_more"] - 0.5,
            base=0.5,
            marker_color=[
                CHOSEN_COLOUR if s >= 0.5 else REJECTED_COLOUR for s in table["share_chosen_more"].fillna(0.5)
            ],
            error_y=dict(
                type="data",
                symmetric=False,
                array=table["share_high"] - table["share_chosen_more"],
                arrayminus=table["share_chosen_more"] - table["share_low"],
            ),
            hovertext=[f"{int(n)} differing pairs" for n in table["n_differ"]],
        )
    )
    figure.add_hline(y=0.5, line_dash="dot")
    figure.update_layout(
        yaxis=dict(range=[0, 1], title="share where chosen has more"), height=260, margin=dict(t=10, b=10)
    )
    return figure
