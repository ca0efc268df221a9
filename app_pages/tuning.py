"""Tuning page: pick a saved plan and a method, see the exact configuration and command, start a
run as a job, watch its loss and reward margins live, stop it, resume it; run history."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st
import torch
import yaml

from app_pages.frame import build_frame, escape_markdown
from app_pages.job_panel import POLL_SECONDS, config_form, pick_job, start_panel, watch
from spectrum_core import jobs
from spectrum_core.artifacts import TuningArtifact
from spectrum_core.charts import training_curves
from spectrum_core.errors import SpectrumError
from spectrum_core.interventions import InterventionPlan
from spectrum_core.tuning.config import CONFIG_CLASSES, config_from_dict, preset, tune_cli_args
from spectrum_core.tuning.runs import TuneStage

METHOD_NAMES = {
    "dpo": "Weighted DPO on the shaped pairs",
    "spectrum": "Spectrum Tuning: distribution tasks + shaped chosen responses",
    "reset": "ReSet: rejection sampling with the shaped reward and task scorers",
}
CURVES = {"dpo": ("loss", "rewards_margins"), "reset": ("loss", "acceptance", "score_kept")}
# What each method did in the latest method benchmark (bench/methods/): its results files.
BENCHMARKS = Path(__file__).resolve().parent.parent / "bench" / "methods" / "results"
BENCHMARKED = {"spectrum": ("spectrum", "ia2"), "reset": ("reset",)}


def benchmark_records(method: str) -> list[dict]:
    """The latest benchmark record behind ``method`` (IA2 priming is an option of Spectrum
    Tuning's supervised loop); none when the benchmark has not been run."""
    paths = [BENCHMARKS / f"{name}.json" for name in BENCHMARKED.get(method, ())]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


frame = build_frame()
workspace = frame.workspace
st.title("Tuning")
if frame.audit_id is None:
    st.info(
        "Run an audit, decide on its concepts and save a plan on the Interventions page; tuning trains on a saved plan."
    )
    st.stop()
plans = {p["id"]: p for p in workspace.plans(frame.audit_id)}
if not plans:
    st.info("No saved plan for this audit yet: save one on the Interventions page.")
    st.stop()


def plan_label(plan_id: int) -> str:
    record = plans[plan_id]
    summary = yaml.safe_load(record["plan_yaml"]).get("data_summary", {})
    return (
        f"plan #{plan_id} · {record['created_at'][:16].replace('T', ' ')} · {record['created_by']} · "
        f"{summary.get('changed', '?')} pairs changed"
    )


plan_id = st.selectbox("Plan", list(plans), format_func=plan_label)
plan = InterventionPlan.from_yaml(plans[plan_id]["plan_yaml"])
left, right = st.columns(2)
method = left.radio("Method", list(CONFIG_CLASSES), format_func=METHOD_NAMES.get)
for record in benchmark_records(method):
    left.caption(f"Latest benchmark: {escape_markdown(record['headline'])}, {record['date']}")
    with left.expander(f"Full report: {record['method']} benchmark (mean [95% interval over seeds])"):
        table = pd.DataFrame({c: {m: v["text"] for m, v in ms.items()} for c, ms in record["results"].items()}).T
        st.dataframe(table, width="stretch")
        st.caption(
            f"`bench/methods/{record['method']}.py --preset {record['preset']}`, {record['minutes']} min, "
            f"commit {record['commit']}; settings: {escape_markdown(json.dumps(record['settings']))}"
        )
hardware = right.radio(
    "Preset",
    ["cpu-demo", "gpu"],
    index=1 if torch.cuda.is_available() else 0,
    help="cpu-demo: the bundled model trains in minutes on a laptop CPU; gpu: a real run",
)
with st.form(f"tune-{method}-{hardware}"):
    st.markdown("**Configuration**")
    values = config_form(CONFIG_CLASSES[method], preset(method, hardware), f"cfg-{method}-{hardware}")
    checked = st.form_submit_button("Check configuration")
try:
    config = config_from_dict({"method": method, **values, "plan_id": plan_id})
except (TypeError, SpectrumError) as exc:
    st.error(f"This configuration cannot run: {exc}")
    st.stop()
if checked:
    st.success(
        f"Checked: all {len(values)} settings are valid for {method} on the {hardware} preset, and plan "
        f"{plan_id} exists; the command below runs exactly this."
    )
start_panel(
    workspace,
    TuneStage(config),
    tune_cli_args(config, hardware),
    label="Start",
    user=frame.user,
    watch_key="watch_tune",
)
with st.expander("Full configuration (YAML)"):
    st.code(config.to_yaml(), language="yaml")

runs = [j for j in workspace.jobs("tune") if j.parent_job_id == frame.audit_id]
if not runs:
    st.stop()
st.divider()
st.subheader("Runs")


# Redrawn while a run is under way, as often as the job panel below: drawn once, the list would keep
# the state it had when the page was drawn ("queued") while the panel showed the run going on.
@st.fragment(run_every=POLL_SECONDS if any(jobs.state(workspace, j.id) in jobs.ACTIVE for j in runs) else None)
def runs_table() -> None:
    rows = []
    for j in runs:
        status = jobs.state(workspace, j.id)  # the one reading of a job's state, as the panel's
        started = workspace.job(j.id).started_at
        rows.append(
            {
                "run": workspace.job_title(j.id),
                "status": status,
                "plan": j.plan_id,
                "method": j.settings.get("method", "?"),
                "steps": j.settings.get("max_steps"),
                "started": (started or "")[:16].replace("T", " "),
                "by": j.created_by,
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


runs_table()


def run_details(view: jobs.JobView) -> None:
    job = view.job
    records = view.records
    if any("loss" in r for r in records):
        st.plotly_chart(
            training_curves(records, CURVES.get(job.settings.get("method"), ("loss",))),
            width="stretch",
            key=f"curves-{job.id}",
        )
    folder = workspace.find_artifact(job.artifact_key) if job.status == "succeeded" else None
    if folder is None:
        return
    st.success(f"Adapter and configuration: {folder}")
    report = TuningArtifact(folder).reward_report()
    if report is not None:
        st.markdown(
            f"**Shaped reward**: held-out accuracy {report['accuracy_before']:.2f} unshaped → "
            f"{report['accuracy_after']:.2f} shaped ({report['n_train']} train pairs, "
            f"{report['n_held_out']} held out). Dependence on each decided concept "
            "(correlation of the reward margin with the concept's Δ):"
        )
        st.dataframe(pd.DataFrame(report["dependence"]), hide_index=True, width="stretch")


job_id = pick_job([j.id for j in runs], workspace.job_title, "watch_tune", "Watch run")
watch(workspace, job_id, resume_args=["tune", "--resume", str(job_id)], details=run_details)
