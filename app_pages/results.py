"""Results page: the base model and any tuned runs side by side: steerability, coverage,
alignment, concept prevalence (did suppressed concepts stay unlearned?), reward, faithfulness and
diversity; evaluations run as jobs and are cached; the report exports as HTML and JSON."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from app_pages.frame import build_frame, escape_markdown
from app_pages.job_panel import watch
from spectrum_core import jobs, settings
from spectrum_core.artifacts import EvaluationArtifact
from spectrum_core.metrics import figures
from spectrum_core.metrics.config import PRESETS, eval_preset
from spectrum_core.metrics.figures import METRIC_GROUPS, metric_bars
from spectrum_core.metrics.prediction_report import agreement_rows, seed_spread
from spectrum_core.metrics.report import export_html, export_json, readable_table, significant
from spectrum_core.metrics.results import evaluation_settings, gather, tuning_runs
from spectrum_core.metrics.targets import BASE

# Why the chart shows shares and changes, not mean activations (``metrics.prevalence`` says more).
PREVALENCE_CAPTION = (
    "Left: the share of each model's generations, on the same held-out prompts, where the concept is present, "
    "with 95% intervals. Right: how far each tuned model moved from the base, in standard deviations: the paired "
    "change on the same prompts with its 95% interval (the realised shift of the Prediction tab). The numbers "
    "below also hold each concept's mean value: a difference-mode concept's is the pooled residual's component "
    "along its direction, a signed value that can sit below 0 (say −5) for every response whatever it says, and a "
    "family holding one inherits that sign; read its change from the base, not its level."
)

frame = build_frame()
workspace = frame.workspace
st.title("Results")
st.caption(
    "What the tuned models learned: each metric for the base model and the runs you pick, on the same "
    "held-out prompts, distributions and questions."
)


def numbers(table: pd.DataFrame):
    """A table with its numbers to 3 significant digits (fixed decimals show 2.9e-05 as 0.000)."""
    return table.style.format(significant, subset=list(table.select_dtypes("number").columns))


@st.cache_resource(show_spinner="Reading the audit's SAEs ...", max_entries=2)
def audit_saes(path: str) -> dict:
    from spectrum_core.reward.shaped import load_audit_saes

    return load_audit_saes(path)


runs = tuning_runs(workspace, frame.audit_id)
labels = {
    str(j.id): f"{workspace.job_title(j.id)} · {j.settings.get('method', '?')} · plan "
    f"#{j.plan_id} · {(j.finished_at or '')[:16].replace('T', ' ')}"
    for j in runs
}
left, right = st.columns([3, 1])
picked = left.multiselect(
    "Tuned runs to compare with the base model",
    list(labels),
    format_func=labels.get,
    default=list(labels)[:2],
    help="Finished tuning runs of the audit chosen in the sidebar. The base model is always shown.",
)
presets, newest = evaluation_settings(workspace)
default = newest or ("gpu" if torch.cuda.is_available() else "cpu-demo")
preset_name = right.radio(
    "Evaluation settings",
    list(presets),
    index=list(presets).index(default),
    help="cpu-demo: minutes per model on a laptop CPU; gpu: every held-out item; custom: "
    "settings of evaluations already in the workspace (e.g. from `spectrum eval --set`)",
)
config = presets[preset_name]
if frame.audit_id is None:
    st.info(
        "No finished audit for this dataset: the base model can be evaluated, but concept prevalence and "
        "the reward need an audit (run one on the Audit page)."
    )

audit_folder = frame.audit_folder()
saes = audit_saes(str(audit_folder)) if audit_folder is not None else None
comparison = gather(workspace, picked, config, frame.audit_id, saes)
names = {BASE: "base", **{r: labels[r] for r in picked}}
st.dataframe(
    [
        {"model": names[run], "evaluation": str(folder.name) if folder else "not evaluated yet"}
        for run, folder in comparison.folders.items()
    ],
    hide_index=True,
    width="stretch",
)

missing = comparison.missing
active = [j for j in workspace.jobs("eval") if jobs.refresh(workspace, j.id).active]
if missing and not active:
    options = ["--preset", preset_name if preset_name in PRESETS else "cpu-demo"]
    if preset_name not in PRESETS:  # the custom settings, spelled out
        options += settings.cli_args(config, eval_preset("cpu-demo"))
    command = ["eval", *[a for run in missing for a in ("--run", run)], *options]
    if frame.audit_id is not None:
        command += ["--audit", str(frame.audit_id)]
    st.code("spectrum " + " ".join(command), language="bash")
    if st.button(f"Evaluate {len(missing)} model(s)", type="primary"):
        inputs = {"runs": missing, "audit": frame.audit_id, "preset": preset_name}
        job_id = jobs.start_job(workspace, "eval", command, inputs, parent_job_id=frame.audit_id, user=frame.user)
        st.session_state["watch_eval"] = job_id
        st.rerun()
watched = active[0].id if active else st.session_state.get("watch_eval")
if watched is not None:
    watch(workspace, watched, resume_args=["eval", "--resume", str(watched)])

reports = comparison.reports
if not reports:
    st.stop()
st.divider()
st.subheader("Overview")
overview = readable_table(reports)
st.dataframe(overview.style.format(significant, subset=list(overview.columns[2:])), width="stretch")
st.caption(
    "In the tabs below each metric has a panel and an axis of its own, every model's bar side by side; an error "
    "bar shows a 95% interval where the evaluation measured one, and there is none where it did not."
)

tabs = st.tabs(
    [
        "Concepts",
        "Prediction",
        "Steerability",
        "Coverage",
        "Alignment",
        "Reward and preference",
        "Faithfulness",
        "Diversity",
        "Export",
    ]
)
with tabs[0]:
    if comparison.prevalence:
        flagged = {name: t.loc[t["flagged"], "label"].tolist() for name, t in comparison.prevalence.items()}
        for name, concepts in flagged.items():
            if concepts:
                st.error(
                    f"{name}: suppressed concept(s) rose in its generations: "
                    + "; ".join(escape_markdown(c) for c in concepts)
                )
            else:
                st.success(f"{name}: no suppressed concept rose (95% interval of the paired change).")
        st.plotly_chart(figures.prevalence_figure(comparison.prevalence), width="stretch")
        st.caption(PREVALENCE_CAPTION)
        for name, table in comparison.prevalence.items():
            with st.expander(f"Numbers: {name}"):
                st.dataframe(numbers(table), hide_index=True, width="stretch")
    elif comparison.base_prevalence is not None:
        st.info("Only the base model is evaluated: its prevalence of the audit's decided concepts.")
        st.plotly_chart(figures.prevalence_figure({BASE: comparison.base_prevalence}), width="stretch")
        st.dataframe(numbers(comparison.base_prevalence), hide_index=True, width="stretch")
    else:
        st.info("Concept prevalence compares a tuned run's generations with the base model's; pick an evaluated run.")
with tabs[1]:
    if not comparison.shifts:
        st.info(
            "Did the audit predict what tuning learned? Evaluate a tuned run: its evaluation compares the shift "
            "the audit predicted for each of its heads (and a sample of non-significant families) with the shift in "
            "the run's generations."
        )
    else:
        st.caption(
            "Each point is a concept the audit predicted: every head (circles), a seeded random sample of as many "
            "non-significant families (open circles, so the scatter spans the whole range), and the run's decided "
            "concepts (diamonds; red edge: suppressed). Predicted: the weighted mean standardised Δ of exactly the "
            "pairs the run trained on, after the plan's drops, flips and weights. Realised: the paired change in the "
            "tuned model's generations against the base model's on the same held-out prompts, in standard "
            "deviations, with its 95% interval."
        )
        st.markdown(
            "**Agreement over every predicted concept**, with 95% bootstrap intervals over the evaluation prompts. "
            "The audit's prediction must beat two predictors that do without the SAE: *length alone* (a concept "
            "moves only as far as tuning changes length) and a *bag of words* (the concept as the training pairs' "
            "word counts read it). *Length partialled out* takes length out of both the prediction and the "
            "generations. A control run (its plan's labels swapped in every pair, or in a random half) must "
            "show the agreement reversed, or gone."
        )
        st.dataframe(agreement_rows(reports), hide_index=True, width="stretch")
        spread = seed_spread(reports, comparison.shifts)
        if len(spread):
            st.markdown("**Runs that differ only in seed**: how far the check moves with the seed alone")
            st.dataframe(spread, hide_index=True, width="stretch")
        summaries = {r["target"]: r.get("prediction") for r in reports}
        st.plotly_chart(figures.prediction_scatter(comparison.shifts, summaries), width="stretch")
        surprises = pd.DataFrame(
            [{"model": name, **x} for name, summary in summaries.items() for x in (summary or {}).get("surprises", [])]
        )
        if len(surprises):
            st.markdown("**Surprises**: concepts that moved against the prediction, or while the audit saw nothing")
            st.dataframe(surprises, hide_index=True, width="stretch")
        for name, table in comparison.shifts.items():
            with st.expander(f"Numbers: {name}"):
                st.dataframe(table, hide_index=True, width="stretch")
    if comparison.curves:
        st.subheader("Suppressed concepts over training")
        for report in reports:
            again = (report.get("reemergence") or {}).get("reemerged")
            if report["target"] not in comparison.curves:
                continue
            if again:
                st.error(
                    f"{report['target']}: {len(again)} suppressed concept(s) held down at a checkpoint rose later: "
                    + ", ".join(f"`{c}`" for c in again)
                )
            else:
                st.success(f"{report['target']}: no suppressed concept came back after being held down.")
        st.plotly_chart(figures.checkpoint_curves(comparison.curves), width="stretch")
with tabs[2]:
    st.plotly_chart(figures.steerability_curve(reports), width="stretch")
    st.plotly_chart(metric_bars(reports, METRIC_GROUPS["Steerability"]), width="stretch")
with tabs[3]:
    st.plotly_chart(metric_bars(reports, METRIC_GROUPS["Valid output coverage"]), width="stretch")
    st.caption(
        f"{config.coverage_samples} samples at temperature {config.coverage_temperature:g} per held-out "
        "diffuse-distribution prompt; yield is the mean number of distinct valid outputs per prompt."
    )
with tabs[4]:
    for title in ("Distributional alignment (Jensen-Shannon divergence)", "Alignment: mode match"):
        st.plotly_chart(metric_bars(reports, METRIC_GROUPS[title], title), width="stretch")
    which = st.selectbox("Per opinion group for", list(comparison.report_folders))
    table = EvaluationArtifact(comparison.report_folders[which]).table("alignment")
    if len(table):
        st.plotly_chart(figures.alignment_by_group(table), width="stretch")
with tabs[5]:
    st.plotly_chart(metric_bars(reports, METRIC_GROUPS["Preference and reward"]), width="stretch")
    for report in reports:
        if report.get("reward"):
            reward = report["reward"]
            st.markdown(
                f"**{report['target']}**: shaped reward ({reward['reward']}) mean {reward['tuned_mean']:+.3f} "
                f"vs base {reward['base_mean']:+.3f}; win rate {reward['win_rate']:.2f} over "
                f"{reward['prompts']} prompts."
            )
        if report.get("preference"):
            p = report["preference"]
            st.markdown(
                f"**{report['target']}**: implicit reward accuracy {p['accuracy']:.2f} on {p['pairs']} "
                f"held-out pairs (β = {p['beta']:g})."
            )
with tabs[6]:
    st.plotly_chart(figures.faithfulness_points(reports), width="stretch")
with tabs[7]:
    st.plotly_chart(metric_bars(reports, METRIC_GROUPS["Diversity of generations"]), width="stretch")
with tabs[8]:
    prevalence = (
        pd.concat([t.assign(model=n) for n, t in comparison.prevalence.items()], ignore_index=True)
        if comparison.prevalence
        else comparison.base_prevalence
    )
    # Built when clicked (the HTML carries plotly.js inline, several MB), not on every rerun.
    st.download_button(
        "Report (HTML)",
        lambda: export_html(
            reports,
            figures.all_figures(
                reports, comparison.prevalence, comparison.shifts, comparison.curves, comparison.base_prevalence
            ),
            prevalence,
        ),
        file_name="spectrum-evaluation.html",
        mime="text/html",
        on_click="ignore",
    )
    st.download_button(
        "Report (JSON)",
        lambda: export_json(reports, prevalence),
        file_name="spectrum-evaluation.json",
        mime="application/json",
        on_click="ignore",
    )
    st.caption("Both carry each model's run configuration, plan and audit identifiers and the evaluation settings.")
