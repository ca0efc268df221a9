"""Benchmark: the evaluation's runtime with the cpu-demo preset, the base model's report, and a
base-vs-tuned comparison of a weighted-DPO run on a plan that suppresses concepts and its unshaped
twin (the same run on a plan with the same decisions but no data intervention).

Uses the full HH audit of the workspace and its newest saved plan (see bench/tuning_demo.py); runs
(or reuses) the two cpu-demo DPO runs; evaluates base, shaped and twin.

Run: `.venv/bin/python bench/evaluation_demo.py [--workspace DIR]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "spectrum-bench-full-hh")
    args = parser.parse_args()
    os.environ["SPECTRUM_WORKSPACE"] = str(args.workspace)
    sys.path.insert(0, str(ROOT / "bench"))
    import pandas as pd
    from app_render import full_audit_plan

    from spectrum_core.interventions import save_plan, shape_pairs
    from spectrum_core.metrics.config import eval_preset
    from spectrum_core.metrics.evaluate import run_evaluation
    from spectrum_core.metrics.report import comparison_table, load_report
    from spectrum_core.metrics.results import gather
    from spectrum_core.reward.shaped import load_audit_saes
    from spectrum_core.tuning.config import preset
    from spectrum_core.tuning.runs import run_tuning

    # The oldest plan: the decisions bench/app_render.py made (the twin below is saved after it).
    workspace, audit_id, folder, view, dataset, shaped_plan = full_audit_plan(args.workspace, newest=False)
    # The unshaped twin: the same decisions, every data intervention "none" (DPO sees the original pairs).
    twin = dataclasses.replace(
        shaped_plan.plan, concepts=[dataclasses.replace(c, intervention="none") for c in shaped_plan.plan.concepts]
    )
    twin_plan = save_plan(
        workspace,
        twin,
        shape_pairs(twin, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array),
        dataset,
        user="bench",
    )
    print("plan:", [(c.concept_id, c.action, c.intervention, c.label[:40]) for c in shaped_plan.plan.concepts])

    runs = {}
    for name, saved in (("shaped", shaped_plan), ("twin", twin_plan)):
        config = preset("dpo", "cpu-demo")
        config.plan_id = saved.plan_id
        started = time.perf_counter()
        key = run_tuning(workspace, config).name  # the artifact's folder is named by its key
        # the job that trained it (a later identical request makes a job that only reuses it)
        runs[name] = min(j.id for j in workspace.jobs("tune") if j.artifact_key == key)
        print(f"{name}: run {runs[name]} ({time.perf_counter() - started:.0f} s)", flush=True)

    config = eval_preset("cpu-demo")
    times = {}
    for run in ["base", str(runs["shaped"]), str(runs["twin"])]:
        started = time.perf_counter()
        result = run_evaluation(workspace, run, config, audit_job_id=audit_id)
        times[run] = time.perf_counter() - started
        report = load_report(result)
        print(
            f"evaluated {report['target']} in {times[run]:.0f} s (sections: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in report["runtime_seconds"].items())
            + ")",
            flush=True,
        )
    comparison = gather(workspace, [str(runs["shaped"]), str(runs["twin"])], config, audit_id, load_audit_saes(folder))
    table = comparison_table(comparison.reports)
    table.columns = ["base", f"shaped (run {runs['shaped']})", f"unshaped twin (run {runs['twin']})"]
    print("\n| metric | " + " | ".join(table.columns) + " |")
    print("|---" * (len(table.columns) + 1) + "|")
    for metric, row in table.iterrows():
        cells = ["–" if v is None or v != v else (f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row]
        print(f"| {metric} | " + " | ".join(cells) + " |")
    for name, prevalence in comparison.prevalence.items():
        print(f"\n{name}: concept prevalence (mean activation, paired change with 95% CI, firing rate)")
        for row in prevalence.itertuples():
            print(
                f"| {row.concept_id} | {row.action} | {row.label[:40]} | {row.base_mean:.3f} → {row.tuned_mean:.3f} "
                f"| {row.difference:+.3f} [{row.difference_low:+.3f}, {row.difference_high:+.3f}] | "
                f"{row.base_rate:.2f} → {row.tuned_rate:.2f} | {'FLAGGED' if row.flagged else ''} |"
            )
    print("\n" + json.dumps({k: round(v, 1) for k, v in times.items()}))


if __name__ == "__main__":
    main()
