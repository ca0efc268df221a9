"""Interventions page: compile the decisions into a plan, preview what it does to the data, save
and export it (TRL JSONL / Parquet with a weight column, and the plan as YAML)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app_pages.frame import build_frame, escape_markdown, load_audit_view
from app_pages.job_panel import start_panel, watch
from spectrum_core.charts import association_shift
from spectrum_core.constants import PLAN_FILE, SHAPED_JSONL_FILE, SHAPED_PARQUET_FILE
from spectrum_core.interventions import (
    CONTROLS,
    DATA_INTERVENTIONS,
    INTERVENTION_HELP,
    association_table,
    compile_plan,
    save_plan,
    shape_pairs,
    with_scores,
)

frame = build_frame()
workspace = frame.workspace
st.title("Interventions")
folder = frame.audit_folder()
if folder is None:
    st.info(
        "Run an audit on the Audit page and decide on some concepts on the Concepts page; "
        "their interventions are previewed here."
    )
    st.stop()
view = load_audit_view(str(folder))
audit_id = frame.audit_id
decisions = workspace.current_decisions(audit_id)
if not decisions:
    st.info(
        "No concept has been kept, suppressed or amplified yet. Decide on the Concepts page; "
        "each decision shows up here with a choice of how it acts on the data."
    )
    st.stop()

st.markdown("**How each decision acts on the data** (saved as soon as you choose)")
labels = workspace.labels(audit_id)
for concept_id, decision in sorted(decisions.items(), key=lambda item: item[1]["id"]):
    options = DATA_INTERVENTIONS[decision["action"]]
    current = decision["intervention"] or options[0]
    left, middle, right = st.columns([4, 1, 3])
    label = labels.get(concept_id) or (
        view.concepts.loc[concept_id, "label"] if concept_id in view.concepts.index else concept_id
    )
    left.text(f"{concept_id} · {label}" + (f"\nreason: {decision['reason']}" if decision["reason"] else ""))
    middle.text(decision["action"] + (f" ×{decision['strength']:g}" if decision["strength"] else ""))
    choice = right.selectbox(
        "Intervention",
        options,
        index=options.index(current),
        key=f"intervention-{decision['id']}",
        label_visibility="collapsed",
        format_func=lambda o: f"{o}: {INTERVENTION_HELP[o]}",
        disabled=len(options) == 1,
    )
    if choice != current:
        workspace.set_intervention(decision["id"], choice, user=frame.user)
        st.rerun()

# With a scoring job's Δ on the pairs a sampled audit did not see, the plan covers them too.
plan, scores = with_scores(workspace, compile_plan(workspace, audit_id, view))
dataset = frame.dataset()
all_pair_ids = pd.Index(dataset.pairs["pair_id"])


@st.cache_data(show_spinner="Applying the plan ...", max_entries=32)
def preview(audit_folder: str, plan_yaml: str, _plan, _all_pair_ids, dataset_key: int, _scores):
    """The shaped pairs for a plan; cached by the plan's text, which names its scores (the
    underscored inputs follow it)."""
    audit = load_audit_view(audit_folder)
    return shape_pairs(_plan, _all_pair_ids, audit.pair_ids, audit.delta_array, _scores)


shaped = preview(str(folder), plan.to_yaml(), plan, all_pair_ids, frame.dataset_id, scores)
summary = shaped.summary()

st.divider()
st.subheader("What the plan does to the data")
cols = st.columns(5)
cols[0].metric("Pairs changed", f"{summary['changed']:,} of {summary['pairs']:,}")
cols[1].metric("Dropped", f"{summary['dropped']:,}")
cols[2].metric("Flipped", f"{summary['flipped']:,}")
cols[3].metric("Reweighted", f"{summary['reweighted']:,}")
cols[4].metric(
    "Effective pairs",
    f"{summary['effective_pairs']:,.0f}",
    help="(Σw)² / Σw²: how many equally weighted pairs the weighted data is worth",
)
st.caption(
    f"Pairs the plan covers: {summary['audited']:,} audited, {summary['scored']:,} scored by a scoring job; "
    f"{summary['unscored']:,} neither (left unchanged"
    + ("; score them under *Pairs outside the audit* below)." if summary["unscored"] else ").")
)
for note in summary["notes"]:
    st.warning(escape_markdown(note))


def score_the_rest(n_unscored: int) -> None:
    """A sampled audit: start (or watch) the job that scores the decided concepts on the other pairs."""
    from spectrum_core.audit.config import ScoringConfig
    from spectrum_core.audit.scoring import ScoringStage

    concepts = sorted(decisions)
    st.markdown(
        f"**The audit saw {summary['audited']:,} of {summary['pairs']:,} pairs.** Scoring the other pairs for the "
        "decided concepts (the audit's own extraction, SAEs and probes) lets the plan act on every pair."
    )
    stage = ScoringStage(ScoringConfig(audit=audit_id, concepts=tuple(concepts)), view)
    args = ["score", "--audit", str(audit_id), "--concepts", *concepts]
    start_panel(
        workspace, stage, args, label=f"Score the other {n_unscored:,} pairs", user=frame.user, watch_key="watch_score"
    )
    job_id = st.session_state.get("watch_score")
    if job_id is not None:
        watch(workspace, job_id, resume_args=["score", "--resume", str(job_id)])


n_undecided = st.slider("Undecided concepts to watch for off-target effects (top ranked)", 0, 30, 10)
undecided = [c for c in view.concepts.sort_values("rank")["concept_id"] if c not in decisions][:n_undecided]
watched = list(decisions) + undecided
association = association_table(shaped, view.pair_ids, view.delta_array, watched)
display_labels = {c: labels.get(c, view.concepts.loc[c, "label"]) for c in watched if c in view.concepts.index}
st.plotly_chart(
    association_shift(association, display_labels, {c: d["action"] for c, d in decisions.items()}), width="stretch"
)
with st.expander("Association before and after, as numbers"):
    st.dataframe(
        association.assign(label=[display_labels.get(c, c) for c in association["concept_id"]]),
        hide_index=True,
        width="stretch",
        column_config={
            k: st.column_config.NumberColumn(format="%.3f")
            for k in ("share_before", "share_after", "effect_before", "effect_after")
        },
    )
with st.expander(f"Changed pairs ({summary['changed']:,})"):
    st.dataframe(
        shaped.changed(),
        hide_index=True,
        width="stretch",
        column_config={"weight": st.column_config.NumberColumn(format="%.3f")},
    )

st.divider()
st.subheader("Save and export")
key = f"plan-{plan.plan_hash[:16]}"
saved_folder = workspace.find_artifact(key)
if saved_folder is None:
    st.caption(
        "Saving records the plan in the workspace (the Tuning stage trains on a saved plan) and "
        "writes the shaped dataset in TRL's preference format with a `weight` column."
    )
    if st.button("Save plan", type="primary"):
        save_plan(workspace, plan, shaped, dataset, user=frame.user)
        st.rerun()
else:
    st.success(f"This plan is saved in {saved_folder}.")
    downloads = st.columns(3)
    for column, (name, mime) in zip(
        downloads,
        (
            (PLAN_FILE, "application/yaml"),
            (SHAPED_JSONL_FILE, "application/jsonl"),
            (SHAPED_PARQUET_FILE, "application/octet-stream"),
        ),
    ):
        column.download_button(
            f"Download {name}",
            (saved_folder / name).read_bytes(),
            file_name=name,
            mime=mime,
            width="stretch",
            key=f"download-{name}",
        )
with st.expander("Controls for the prediction check"):
    st.caption(
        "Does the audit predict what tuning learns? Tune once on this plan and once on a control of it, then "
        "compare them on the Results page's Prediction tab: with the labels swapped in every pair the prediction "
        "and the realised shifts must both reverse; with them swapped in a random half, both must vanish. "
        "A control plan is saved beside this one and never replaces it."
    )
    control = st.radio(
        "Control",
        [c for c in CONTROLS if c != "none"],
        format_func=lambda c: f"{c.replace('_', ' ')}: {CONTROLS[c]}",
        key="control-kind",
    )
    if st.button("Save the control plan", key="save-control"):
        variant = plan.as_control(control)
        shaped_control = preview(str(folder), variant.to_yaml(), variant, all_pair_ids, frame.dataset_id, scores)
        saved = save_plan(workspace, variant, shaped_control, dataset, user=frame.user)
        st.success(
            f"Saved control plan #{saved.plan_id} ({control.replace('_', ' ')}); tune on it from the Tuning page."
        )
with st.expander("The plan as YAML"):
    st.code(plan.to_yaml(summary), language="yaml")
history = workspace.plans(audit_id)
if history:
    with st.expander(f"Saved plans of this audit ({len(history)})"):
        st.dataframe(
            pd.DataFrame(history)[["id", "created_at", "created_by", "plan_hash"]], hide_index=True, width="stretch"
        )

if summary["unscored"]:
    st.divider()
    st.subheader("Pairs outside the audit")
    score_the_rest(summary["unscored"])
