"""Audit page: configure an audit, run it as a job in its own process, watch it, stop it."""

from __future__ import annotations

import streamlit as st

from app_pages.frame import build_frame, escape_markdown
from app_pages.job_panel import config_form, pick_job, start_panel, watch
from spectrum_core import jobs, settings
from spectrum_core.artifacts import AuditArtifact
from spectrum_core.audit.config import MODES, AuditConfig
from spectrum_core.audit.runner import AuditStage, resolved_config
from spectrum_core.audit.timing import measured_rate

MAIN_SETTINGS = ("model", "layer", "max_pairs", "sae", "modes", "pooling", "seed")

frame = build_frame()
workspace = frame.workspace
st.title("Audit")
if frame.dataset_id is None:
    st.info("Add a dataset on the Dataset page first.")
    st.stop()
record = workspace.dataset(frame.dataset_id)
st.caption(f"Dataset: {escape_markdown(record['name'])} · {record['rows_kept']:,} pairs")

with st.form("audit_config"):
    left, right = st.columns(2)
    model = left.text_input("Model", "bundled", help="bundled (SmolLM2-135M-Instruct), a hub id, or a local folder")
    layer = left.number_input("Layer (-1: the middle block)", min_value=-1, value=-1, step=1)
    max_pairs = left.number_input(
        "Pairs to audit (0: all)",
        min_value=0,
        value=min(500, record["rows_kept"]),
        step=100,
        help="A seeded sample. Decisions act only on audited pairs; the time it takes is estimated below "
        "from this workspace's last audit.",
    )
    sae_choice = right.radio("SAE", ["train on this dataset", "load a pretrained sae-lens SAE"])
    sae_spec = right.text_input("Pretrained SAE (folder or RELEASE:ID)", disabled=sae_choice.startswith("train"))
    modes = right.multiselect(
        "Modes",
        list(MODES),
        default=list(MODES),
        help="token: SAE on response tokens; difference: WIMHF-style SAE on chosen − rejected",
    )
    pooling = right.selectbox("Pooling per response", ["max", "mean"])
    seed = right.number_input("Seed", min_value=0, value=0, step=1)
    with st.expander("More settings"):
        more = config_form(AuditConfig, AuditConfig(), "audit", skip=MAIN_SETTINGS)
    checked = st.form_submit_button("Check configuration")

chosen = dict(model=model.strip() or "bundled", layer=None if layer < 0 else int(layer), seed=int(seed))
chosen.update(sae="train" if sae_choice.startswith("train") else sae_spec.strip(), pooling=pooling)
chosen.update(modes=tuple(modes) or MODES, max_pairs=int(max_pairs) or None)
try:
    config = settings.from_dict(AuditConfig, {**more, **chosen})
except ValueError as exc:
    st.error(f"This configuration cannot run: {exc}")
    st.stop()
config = resolved_config(config)
audited = record["rows_kept"] if config.max_pairs is None else min(config.max_pairs, record["rows_kept"])
rate = measured_rate(workspace)
if rate is not None:
    st.caption(
        f"About {rate.estimate_minutes(audited):.0f} min for {audited:,} pairs at the speed measured here "
        f"({workspace.job_title(rate.job_id)}: {rate.minutes:.1f} min for {rate.n_pairs:,} pairs, scaled by pairs; "
        "the seed check, null runs and topics are most of it)."
    )
else:
    st.caption("No audit has finished in this workspace yet, so there is no measured speed to estimate its time from.")
if audited < record["rows_kept"]:
    st.warning(
        f"This audits {audited:,} of {record['rows_kept']:,} pairs: decisions will act only on the audited pairs, "
        f"and the other {record['rows_kept'] - audited:,} go to training unchanged. Audit every pair (0) for a "
        "plan that covers the whole dataset."
    )
if checked:
    st.success(
        f"Checked: every setting is valid, and the model, layer and dtype resolve as in the command below "
        f"({'all' if config.max_pairs is None else f'{config.max_pairs:,}'} of {record['rows_kept']:,} pairs)."
    )
args = ["audit", str(record["id"]), *settings.cli_args(config, AuditConfig())]
if config.sae != "train" and not config.sae:
    st.warning("Give a pretrained SAE folder or RELEASE:ID, or choose to train one.")
else:
    start_panel(
        workspace, AuditStage(record["id"], config), args, label="Start audit", user=frame.user, watch_key="watch_job"
    )

audit_jobs = [j for j in workspace.jobs("audit") if j.dataset_id == record["id"]]
if not audit_jobs:
    st.stop()


def results(view: jobs.JobView) -> None:
    folder = workspace.find_artifact(view.job.artifact_key) if view.status == "succeeded" else None
    if folder is None:
        return
    audit = AuditArtifact(folder)
    report, sae = audit.report, audit.report.sae.get("token")
    columns = st.columns(4)
    columns[0].metric("Pairs", f"{report.n_pairs:,}")
    columns[1].metric(f"Concepts with q < {report.fdr_threshold:g}", f"{report.total_significant:,}")
    if sae:
        columns[2].metric("SAE explained variance", f"{sae['explained_variance']:.2f}")
    if "token" in report.joint_models:
        columns[3].metric("Held-out AUC (token mode)", f"{report.joint_models['token'].auc_held_out:.2f}")
    if report.baselines is not None:
        st.caption(report.baselines.length.sentence())
    if report.families is not None:
        st.caption(report.families.sentence())
    if report.heads is not None:
        st.caption(report.heads.sentence())
    if report.confirmation is not None:
        (st.success if report.confirmation.n_confirmed else st.info)(report.confirmation.sentence())
    if report.null is not None:
        st.caption(report.null.sentence())
    for warning in report.warnings:
        st.warning(escape_markdown(warning))
    if report.verdict:
        (st.success if report.total_significant else st.warning)(report.verdict)
    st.dataframe(
        # families rank first (the top of the review queue), then the single concepts
        audit.concepts().head(10)[["rank", "concept_id", "label", "direction", "share_chosen_more", "q_value", "coef"]],
        hide_index=True,
        width="stretch",
    )


labels = {  # one snapshot per run: a select box's labels must not change while the page draws
    j.id: f"{workspace.job_title(j.id)} · {jobs.refresh(workspace, j.id).status} · "
    f"{j.created_at[:16].replace('T', ' ')}"
    for j in audit_jobs
}
job_id = pick_job(list(labels), labels.__getitem__, "watch_job", "Audit runs of this dataset")
watch(workspace, job_id, details=results)
