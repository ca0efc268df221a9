"""Tuning page: pick a saved plan and a method, see the exact configuration and command, start a
run as a job, watch its loss and reward margins live, stop it, resume it; run history."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import streamlit as st
import torch
import yaml

from app_pages.frame import build_frame, job_controls, job_log_and_refresh
from spectrum_core import jobs
from spectrum_core.charts import training_curves
from spectrum_core.interventions import InterventionPlan
from spectrum_core.progress import read_progress
from spectrum_core.tuning.config import CONFIG_CLASSES, config_from_dict, preset, tune_cli_args
from spectrum_core.tuning.runs import tuning_key

METHOD_NAMES = {"dpo": "Weighted DPO on the shaped pairs",
                "spectrum": "Spectrum Tuning: distribution tasks + shaped chosen responses",
                "reset": "ReSet: rejection sampling with the shaped reward and task scorers"}
SKIP = {"plan_id", "method"}

frame = build_frame()
workspace = frame.workspace
st.title("Tuning")
if frame.audit_id is None:
    st.info("Run an audit, decide on its concepts and save a plan on the Interventions page; "
            "tuning trains on a saved plan.")
    st.stop()
plans = workspace.plans(frame.audit_id)
if not plans:
    st.info("No saved plan for this audit yet: save one on the Interventions page.")
    st.stop()


def plan_label(record: dict) -> str:
    summary = yaml.safe_load(record["plan_yaml"]).get("data_summary", {})
    return (f"plan #{record['id']} · {record['created_at'][:16].replace('T', ' ')} · {record['created_by']} · "
            f"{summary.get('changed', '?')} pairs changed")


by_id = {p["id"]: p for p in plans}
plan_id = st.selectbox("Plan", list(by_id), format_func=lambda i: plan_label(by_id[i]))
plan = InterventionPlan.from_yaml(by_id[plan_id]["plan_yaml"])
left, right = st.columns(2)
method = left.radio("Method", list(CONFIG_CLASSES), format_func=METHOD_NAMES.get)
hardware = right.radio("Preset", ["cpu-demo", "gpu"], index=1 if torch.cuda.is_available() else 0,
                       help="cpu-demo: the bundled model trains in minutes on a laptop CPU; gpu: a real run")

defaults = preset(method, hardware)
with st.form(f"tune-{method}-{hardware}"):
    st.markdown("**Configuration**")
    values = {}
    columns = st.columns(3)
    shown = [f for f in dataclasses.fields(defaults) if f.init and f.name not in SKIP]
    for index, field in enumerate(shown):
        value = getattr(defaults, field.name)
        column = columns[index % 3]
        key = f"cfg-{method}-{hardware}-{field.name}"
        if isinstance(value, bool):
            values[field.name] = column.checkbox(field.name, value, key=key)
        elif isinstance(value, int) or field.name in ("max_train_pairs",):
            values[field.name] = column.number_input(field.name, value=value, step=1, key=key)
        elif isinstance(value, float):
            values[field.name] = column.number_input(field.name, value=value, format="%g", key=key)
        else:
            values[field.name] = column.text_input(field.name, "" if value is None else str(value), key=key) or None
    st.form_submit_button("Check configuration")

try:
    config = config_from_dict({"method": method, **values, "plan_id": plan_id})
except (TypeError, ValueError) as exc:
    st.error(f"This configuration cannot run: {exc}")
    st.stop()
args = tune_cli_args(config, hardware)
st.code("spectrum " + " ".join(args), language="bash")
with st.expander("Full configuration (YAML)"):
    st.code(config.to_yaml(), language="yaml")

key, inputs = tuning_key(config, plan.plan_hash)
finished = workspace.find_artifact(key)
running = workspace.find_job("tune", inputs, statuses=("running", "queued"))
if finished is not None:
    st.success(f"This run has already finished with this configuration: {finished}")
elif running is not None and jobs.refresh(workspace, running["id"])["status"] in jobs.ACTIVE:
    st.info(f"Run #{running['id']} with this configuration is under way (below).")
elif st.button("Start", type="primary"):
    job_id = jobs.start_job(workspace, "tune", args, inputs, dataset_id=plan.dataset_id,
                            parent_job_id=plan.audit_job_id, plan_id=plan_id, user=frame.user)
    st.session_state["watch_tune"] = job_id
    st.rerun()

runs = [j for j in workspace.jobs("tune") if j["parent_job_id"] == frame.audit_id]
if not runs:
    st.stop()
st.divider()
st.subheader("Runs")
history = pd.DataFrame([{
    "run": j["id"], "status": jobs.refresh(workspace, j["id"])["status"], "plan": j["plan_id"],
    "method": j["config"].get("config", {}).get("method", "?"),
    "steps": j["config"].get("config", {}).get("max_steps"), "started": (j["started_at"] or "")[:16].replace("T", " "),
    "by": j["created_by"]} for j in runs])
st.dataframe(history, hide_index=True, width="stretch")
ids = [j["id"] for j in runs]
default = st.session_state.get("watch_tune")
job_id = st.selectbox("Watch run", ids, index=ids.index(default) if default in ids else 0,
                      format_func=lambda i: f"#{i}")


@st.fragment(run_every=2.0)
def show_run(job_id: int) -> None:
    view = jobs.view(workspace, job_id)
    job = view.job
    st.markdown(f"**Run #{job_id}: {job['status']}**")
    train = view.stages.get("train")
    if train:
        eta = train.get("eta")
        st.progress(min(1.0, train["done"] / max(1, train["total"] or 1)),
                    text=f"step {train['done']} / {train['total']}"
                         + (f" · about {eta:.0f} s left" if eta and view.active else ""))
    records = read_progress(workspace.root / job["progress_path"]) if job["progress_path"] else []
    if any("loss" in r for r in records):
        metrics = {"dpo": ("loss", "rewards_margins"), "reset": ("loss", "acceptance", "score_kept")}.get(
            job["config"].get("config", {}).get("method"), ("loss",))
        st.plotly_chart(training_curves(records, metrics), width="stretch", key=f"curves-{job_id}")
    job_controls(workspace, view, f"tune-{job_id}", "The run failed.", ["tune", "--resume", str(job_id)])
    if job["status"] == "succeeded" and job["artifact_key"]:
        folder = workspace.find_artifact(job["artifact_key"])
        st.success(f"Adapter and configuration: {folder}")
        report_path = folder / "reward" / "report.json" if folder else None
        if report_path is not None and report_path.exists():
            report = json.loads(report_path.read_text())
            st.markdown(f"**Shaped reward**: held-out accuracy {report['accuracy_before']:.2f} unshaped → "
                        f"{report['accuracy_after']:.2f} shaped ({report['n_train']} train pairs, "
                        f"{report['n_held_out']} held out). Dependence on each decided concept "
                        "(correlation of the reward margin with the concept's Δ):")
            st.dataframe(pd.DataFrame(report["dependence"]), hide_index=True, width="stretch")
    job_log_and_refresh(view, f"tune-{job_id}")


show_run(job_id)
