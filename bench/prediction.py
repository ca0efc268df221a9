"""Benchmark: does the full HH audit predict what weighted DPO learns?

Three weighted-DPO runs on the full bundled HH audit (2,303 pairs), each evaluated against the
base model on the same held-out prompts:

1. **unshaped**: a plan with no decision (DPO sees the pairs as they are);
2. **suppressed**: the audit's best-ranked refusal-like family (nearest probe "refusal", else
   "apology") suppressed with its default data intervention;
3. **amplified**: the same family amplified by upweighting (strength ``AMPLIFY_STRENGTH``).

For each, the evaluation's prediction scatter (the audit's top 50 families and the decided one):
R², Spearman ρ and sign agreement of predicted against realised shifts, and the suppressed run's
curve over its checkpoints. Checks: the suppressed family does not rise; the amplified one rises
more than in the unshaped run. The unshaped run's scatter is saved as a PNG (the bundled Chromium
renders the plotly figure).

Run: `.venv/bin/python bench/prediction.py [--workspace DIR] [--preset cpu|gpu] [--png PATH]`.
The audit is made first when the workspace has none (about 14 minutes on a 2-core CPU); the
timings printed exclude it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Amplified by upweighting its agreeing pairs ×(1 + strength) in the data (amplify's default
# intervention acts on the reward only, which DPO on the data never sees).
AMPLIFY_STRENGTH = 2.0
REFUSAL_PROBES = ("refusal", "apology")

# The DPO run: LoRA on every linear layer, a constant learning rate high enough that a few dozen
# steps move a 135M model's generations (the cpu-demo preset's 20 steps at 2e-4 move little).
CPU_RUN = dict(
    max_steps=48,
    batch_size=4,
    grad_accum=1,
    max_length=256,
    max_train_pairs=None,
    learning_rate=1e-3,
    lora_r=16,
    lora_alpha=32,
    beta=0.1,
    save_steps=16,
)
RUNS = {
    "cpu": CPU_RUN,
    "gpu": {
        **CPU_RUN,
        "max_steps": 400,
        "batch_size": 16,
        "max_length": 1024,
        "learning_rate": 2e-4,
        "save_steps": 100,
    },
}
# The evaluation: only the closed-loop sections matter here; the rest run on a token size.
CPU_EVAL = dict(
    steer_families=("coin",),
    steer_tasks_per_family=1,
    steer_samples=2,
    coverage_prompts=0,
    polis_statements=0,
    ambient_items=0,
    grounded_questions=0,
    constraint_prompts=0,
    prevalence_prompts=96,
    prevalence_max_new_tokens=48,
    preference_pairs=32,
    reward_pairs=60,
)
EVALS = {
    "cpu": CPU_EVAL,
    "gpu": {
        **CPU_EVAL,
        "prevalence_prompts": 512,
        "prevalence_max_new_tokens": 128,
        "preference_pairs": 200,
        "reward_pairs": 300,
        "batch_size": 32,
    },
}


def refusal_family(view) -> str:
    """The best-ranked significant family whose nearest probe is refusal (else apology)."""
    concepts = view.concepts
    alpha = view.report.fdr_threshold
    families = concepts[(concepts["kind"] == "family") & (concepts["q_value"] < alpha)].sort_values("rank")
    for probe in REFUSAL_PROBES:
        found = families[families["nearest_probe"].astype(str).str.contains(probe)]
        if len(found):
            return str(found["concept_id"].iloc[0])
    raise SystemExit("the audit has no significant refusal- or apology-like family")


def scatter_png(table, summary: dict, name: str, path: Path) -> None:
    """The scatter as a PNG, rendered by the bundled Chromium (no image-export package needed)."""
    from playwright.sync_api import sync_playwright

    from spectrum_core.metrics.figures import prediction_scatter

    figure = prediction_scatter({name: table}, {name: summary})
    figure.update_layout(width=900, height=560)
    chromium = os.environ.get("SPECTRUM_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 920, "height": 580})
        page.set_content(figure.to_html(include_plotlyjs=True, full_html=True))
        page.locator(".js-plotly-plot").wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(path))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "spectrum-bench-prediction")
    parser.add_argument("--preset", choices=sorted(RUNS), default="cpu")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "prediction-scatter.png")
    args = parser.parse_args()
    os.environ["SPECTRUM_WORKSPACE"] = str(args.workspace)
    sys.path.insert(0, str(ROOT / "bench"))
    import pandas as pd
    from app_render import HH

    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.review import AuditView
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.interventions import compile_plan, save_plan, shape_pairs
    from spectrum_core.metrics.config import EvalConfig
    from spectrum_core.metrics.evaluate import run_evaluation
    from spectrum_core.metrics.report import load_report
    from spectrum_core.tuning.config import DPORunConfig
    from spectrum_core.tuning.runs import run_tuning
    from spectrum_core.workspace import Workspace

    workspace = Workspace(args.workspace)
    started = time.perf_counter()
    outcome = run_audit_in_workspace(workspace, HH, AuditConfig())
    print(f"audit {'reused' if outcome.reused else 'made'} in {time.perf_counter() - started:.0f} s", flush=True)
    audit_id = min(
        j.id for j in workspace.jobs("audit") if j.artifact_key == outcome.artifact_key and j.status == "succeeded"
    )
    view = AuditView.load(outcome.folder)
    dataset = workspace.load_dataset(workspace.job(audit_id).dataset_id)
    family = refusal_family(view)
    print(f"refusal-like family: {family} {view.concepts.loc[family, 'label']!r}", flush=True)

    def saved_plan():
        plan = compile_plan(workspace, audit_id, view)
        shaped = shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
        return save_plan(workspace, plan, shaped, dataset, user="bench")

    for decision in workspace.decisions(audit_id, include_undone=False):  # start from no decision
        workspace.undo_decision(decision["id"], reason="bench: the unshaped plan", user="bench")
    plans = {"unshaped": saved_plan()}
    workspace.decide(audit_id, family, "suppress", reason="bench", user="bench")
    plans["suppressed"] = saved_plan()
    workspace.decide(
        audit_id, family, "amplify", strength=AMPLIFY_STRENGTH, intervention="upweight", reason="bench", user="bench"
    )
    plans["amplified"] = saved_plan()

    config = EvalConfig(**EVALS[args.preset])
    timings: dict[str, float] = {}
    started_all = time.perf_counter()
    started = time.perf_counter()
    run_evaluation(workspace, "base", config, audit_job_id=audit_id)
    timings["base evaluation"] = time.perf_counter() - started
    results = {}
    for name, saved in plans.items():
        started = time.perf_counter()
        key = run_tuning(workspace, DPORunConfig(plan_id=saved.plan_id, **RUNS[args.preset])).name
        run = min(j.id for j in workspace.jobs("tune") if j.artifact_key == key)
        timings[f"{name}: tuning"] = time.perf_counter() - started
        started = time.perf_counter()
        folder = run_evaluation(workspace, run, config, audit_job_id=audit_id)
        timings[f"{name}: evaluation"] = time.perf_counter() - started
        report = load_report(folder)
        table = pd.read_parquet(folder / "shifts.parquet").set_index("concept_id", drop=False)
        results[name] = (report, table, folder)
        summary = report["prediction"]
        row = table.loc[family]
        print(
            f"{name} (run {run}): R² {summary['r2']}, Spearman {summary['spearman']}, sign agreement "
            f"{summary['sign_agreement']} over {summary['moved']} of {summary['families']} families that moved; "
            f"slope {summary['slope']}; {family}: predicted {row['predicted']:+.3f}, realised "
            f"{row['shift']:+.3f} [{row['shift_low']:+.3f}, {row['shift_high']:+.3f}]; "
            f"surprises {len(summary['surprises'])}; runtime {report['runtime_seconds']}",
            flush=True,
        )
    total = time.perf_counter() - started_all

    unshaped = results["unshaped"][1].loc[family]
    suppressed = results["suppressed"][1].loc[family]
    amplified = results["amplified"][1].loc[family]
    curve_path = results["suppressed"][2] / "checkpoint_shifts.parquet"
    curve = pd.read_parquet(curve_path) if curve_path.exists() else pd.DataFrame()
    checks = {
        "suppressed family does not rise (interval not above 0)": not suppressed["shift_low"] > 0,
        "amplified family rises more than unshaped": amplified["shift"] > unshaped["shift"],
    }
    print(
        "\n| run | families | moved | R² | Spearman ρ | sign agreement | slope | family predicted | "
        "family realised [95% CI] |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name, (report, table, _) in results.items():
        s, row = report["prediction"], table.loc[family]

        def fmt(value, spec="+.2f"):
            return "–" if value is None else format(value, spec)

        print(
            f"| {name} | {s['families']} | {s['moved']} | {fmt(s['r2'], '.2f')} | {fmt(s['spearman'])} | "
            f"{fmt(s['sign_agreement'], '.2f')} | {fmt(s['slope'])} | {row['predicted']:+.3f} | "
            f"{row['shift']:+.3f} [{row['shift_low']:+.3f}, {row['shift_high']:+.3f}] |"
        )
    if len(curve):
        print("\nsuppressed run, over checkpoints:")
        for row in curve.sort_values(["concept_id", "position"]).itertuples():
            print(
                f"  {row.concept_id} {row.checkpoint}: {row.shift:+.3f} [{row.shift_low:+.3f}, {row.shift_high:+.3f}]"
            )
        print("re-emerged:", results["suppressed"][0].get("reemergence", {}).get("reemerged"))
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}: {check}")
    print("timings (s):", json.dumps({k: round(v) for k, v in timings.items()}), f"total {total:.0f} s")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    scatter_png(results["unshaped"][1], results["unshaped"][0]["prediction"], "unshaped DPO", args.png)
    print("scatter:", args.png)


if __name__ == "__main__":
    main()
