"""Audit page: configure an audit, run it as a job in its own process, watch it, stop it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages.frame import build_frame, job_controls, job_log_and_refresh
from spectrum_core import jobs
from spectrum_core.audit.pipeline import MODES, AuditConfig
from spectrum_core.audit.runner import audit_cli_args, audit_key, resolved_config

frame = build_frame()
workspace = frame.workspace
st.title("Audit")
if frame.dataset_id is None:
    st.info("Add a dataset on the Dataset page first.")
    st.stop()
record = workspace.dataset(frame.dataset_id)
st.caption(f"Dataset: {record['name']} · {record['rows_kept']:,} pairs")

with st.form("audit_config"):
    left, right = st.columns(2)
    model = left.text_input("Model", "bundled", help="bundled (SmolLM2-135M-Instruct), a hub id, or a local folder")
    layer = left.number_input("Layer (-1: the middle block)", min_value=-1, value=-1, step=1)
    max_pairs = left.number_input("Pairs to audit (0: all)", min_value=0, value=min(500, record["rows_kept"]),
                                  step=100, help="A seeded sample; 500 pairs take about a minute on a laptop CPU.")
    sae_choice = right.radio("SAE", ["train on this dataset", "load a pretrained sae-lens SAE"])
    sae_spec = right.text_input("Pretrained SAE (folder or RELEASE:ID)", disabled=sae_choice.startswith("train"))
    modes = right.multiselect("Modes", list(MODES), default=list(MODES),
                              help="token: SAE on response tokens; difference: WIMHF-style SAE on chosen − rejected")
    pooling = right.selectbox("Pooling per response", ["max", "mean"])
    seed = right.number_input("Seed", min_value=0, value=0, step=1)
    submitted = st.form_submit_button("Check configuration")

config = AuditConfig(model=model.strip() or "bundled", layer=None if layer < 0 else int(layer),
                     sae="train" if sae_choice.startswith("train") else sae_spec.strip(),
                     modes=tuple(modes) or MODES, max_pairs=int(max_pairs) or None,
                     pooling=pooling, seed=int(seed))
config = resolved_config(config)
key, inputs = audit_key(record, config)
command = "spectrum " + " ".join(audit_cli_args(record["id"], config))
st.code(command, language="bash")

finished = workspace.find_artifact(key)
running = workspace.find_job("audit", inputs, statuses=("running", "queued"))
if running is not None:
    running = jobs.refresh(workspace, running["id"])
    if running["status"] not in jobs.ACTIVE:
        running = None
if finished is not None:
    st.success("This audit has already run with this configuration; its results are reused.")
elif running is None:
    if config.sae != "train" and not config.sae:
        st.warning("Give a pretrained SAE folder or RELEASE:ID, or choose to train one.")
    elif st.button("Start audit", type="primary"):
        job_id = jobs.start_job(workspace, "audit", audit_cli_args(record["id"], config), inputs,
                                dataset_id=record["id"], user=frame.user)
        st.session_state["watch_job"] = job_id
        st.rerun()

audit_jobs = [j for j in workspace.jobs("audit") if j["dataset_id"] == record["id"]]
if not audit_jobs:
    st.stop()
labels = {j["id"]: f"#{j['id']} · {jobs.refresh(workspace, j['id'])['status']} · {j['created_at'][:16].replace('T', ' ')}"
          for j in audit_jobs}
default_job = st.session_state.get("watch_job") or (running["id"] if running else audit_jobs[0]["id"])
ids = list(labels)
job_id = st.selectbox("Audit runs of this dataset", ids, index=ids.index(default_job) if default_job in ids else 0,
                      format_func=labels.get)


@st.fragment(run_every=2.0)
def show_job(job_id: int) -> None:
    view = jobs.view(workspace, job_id)
    job = view.job
    st.markdown(f"**Run #{job_id}: {job['status']}**")
    for stage, record_ in view.stages.items():
        total = record_["total"] or 1
        eta = record_.get("eta")
        suffix = f" · about {eta:.0f} s left" if eta and view.active else ""
        st.progress(min(1.0, record_["done"] / total),
                    text=f"{stage}: {record_['done']:,} / {record_['total']:,} {record_.get('unit', '')}{suffix}")
    job_controls(workspace, view, f"audit-{job_id}", "The audit failed.")
    if job["status"] == "succeeded" and job["artifact_key"]:
        folder = workspace.find_artifact(job["artifact_key"])
        if folder is not None:
            report = json.loads((Path(folder) / "report.json").read_text())
            sae = report["sae"].get("token")
            columns = st.columns(4)
            columns[0].metric("Pairs", f"{report['n_pairs']:,}")
            columns[1].metric("Concepts with q < 0.05", f"{sum(report['n_significant'].values()):,}")
            if sae:
                columns[2].metric("SAE explained variance", f"{sae['explained_variance']:.2f}")
            auc = report["joint_models"].get("token", {}).get("auc_held_out")
            if auc is not None:
                columns[3].metric("Held-out AUC (token mode)", f"{auc:.2f}")
            concepts = pd.read_parquet(Path(folder) / "concepts.parquet").head(10)
            st.dataframe(concepts[["rank", "concept_id", "label", "direction", "share_chosen_more",
                                   "q_value", "coef"]], hide_index=True, width="stretch")
    job_log_and_refresh(view, f"audit-{job_id}")


show_job(job_id)
