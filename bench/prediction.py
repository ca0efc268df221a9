"""Benchmark: does the full HH audit predict what weighted DPO learns, in a way a reviewer accepts?

Weighted-DPO runs on plans of the full bundled HH audit (2,303 pairs), each evaluated against the
base model on the same held-out prompts:

1. **unshaped, seed 0** and **unshaped, seed 1**: no decision, two tuning seeds (the spread
   between them says how much of the check is the seed);
2. **label flip**: the same plan with chosen and rejected swapped in every pair (a control: the
   prediction flips sign, and the realised shifts must follow the flipped prediction, not the
   original one);
3. **shuffled**: swapped in a seeded random half of the pairs (a control: predictions near 0,
   realised shifts within noise, R² near chance).

For each run, over every head of the audit plus as many sampled non-significant families: R²,
Spearman ρ and sign agreement with 95% bootstrap intervals over prompts (``metrics/agreement``),
the same for the length-alone and bag-of-words predictors and with length partialled out, and
the SAE's R² less the better baseline's with its paired interval. Then the issue's targets, each
PASS or FAIL, and the unshaped run's scatter as a PNG (rendered by the bundled Chromium).

Run: `.venv/bin/python bench/prediction.py [--workspace DIR] [--preset cpu|gpu] [--png PATH]
[--out JSON]`. The audit (without the SAE-seed check, which the prediction does not read: heads
are chosen before it) is made first when the workspace has none: about 7 minutes on a 2-core
CPU; the timings printed exclude it.
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
    save_steps=1000,  # no checkpoints: the curve over steps is not what this checks
)
RUNS = {
    "cpu": CPU_RUN,
    "gpu": {**CPU_RUN, "max_steps": 400, "batch_size": 16, "max_length": 1024, "learning_rate": 2e-4},
}
# The evaluation: only the prediction matters here; the other sections run on a token size.
# 128 new tokens on the CPU (long-form concepts need room), 512 on a GPU; fewer prompts on the
# CPU keep the whole check within an hour.
CPU_EVAL = dict(
    steer_families=("coin",),
    steer_tasks_per_family=1,
    steer_samples=2,
    coverage_prompts=0,
    polis_statements=0,
    ambient_items=0,
    grounded_questions=0,
    constraint_prompts=0,
    prevalence_prompts=64,
    prevalence_max_new_tokens=128,
    preference_pairs=16,
    reward_pairs=16,
    every_checkpoint=False,
)
EVALS = {
    "cpu": CPU_EVAL,
    "gpu": {**CPU_EVAL, "prevalence_prompts": 512, "prevalence_max_new_tokens": 512, "batch_size": 32},
}
# (name, control, tuning seed)
PLANS = (
    ("unshaped, seed 0", "none", 0),
    ("unshaped, seed 1", "none", 1),
    ("label flip", "label_flip", 0),
    ("shuffled", "shuffle", 0),
)


# The targets (a figure that could not be computed fails its target).
def _at_least(value, bound: float) -> bool:
    return value is not None and value >= bound


def _at_most(value, bound: float) -> bool:
    return value is not None and value <= bound


TARGETS = {
    "sign agreement ≥ 0.8, its interval's low end ≥ 0.7": lambda s, _: (
        _at_least(s["sign_agreement"], 0.8) and _at_least(s["sign_agreement_low"], 0.7)
    ),
    "R² ≥ 0.5, its interval's low end ≥ 0.3": lambda s, _: _at_least(s["r2"], 0.5) and _at_least(s["r2_low"], 0.3),
    "SAE R² at least 0.15 above the better baseline": lambda s, _: _at_least(
        s["over_best_baseline"]["r2_difference"], 0.15
    ),
    "label flip: agreement with the original prediction ≤ 0.2": lambda _, c: _at_most(
        c["flip_agreement_with_original"], 0.2
    ),
    # Near chance either way: R² is signed, and a shuffled run far below 0 is no more a null.
    "shuffled: |R²| ≤ 0.1": lambda _, c: c["shuffled_r2"] is None or abs(c["shuffled_r2"]) <= 0.1,
}


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


def prepare(workspace_dir: Path):
    """The workspace's full HH audit (made when missing) and one saved plan per ``PLANS`` entry."""
    sys.path.insert(0, str(ROOT / "bench"))
    import pandas as pd
    from app_render import HH

    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.review import AuditView
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.interventions import compile_plan, save_plan, shape_pairs
    from spectrum_core.workspace import Workspace

    workspace = Workspace(workspace_dir)
    started = time.perf_counter()
    outcome = run_audit_in_workspace(workspace, HH, AuditConfig(sae_seeds=0))
    print(f"audit {'reused' if outcome.reused else 'made'} in {time.perf_counter() - started:.0f} s", flush=True)
    audit_id = min(
        j.id for j in workspace.jobs("audit") if j.artifact_key == outcome.artifact_key and j.status == "succeeded"
    )
    view = AuditView.load(outcome.folder)
    dataset = workspace.load_dataset(workspace.job(audit_id).dataset_id)
    for decision in workspace.decisions(audit_id, include_undone=False):  # start from no decision
        workspace.undo_decision(decision["id"], reason="bench: the unshaped plan", user="bench")
    plan = compile_plan(workspace, audit_id, view)
    saved: dict[str, int] = {}  # one saved plan per control (the two seeds train on one plan)
    plans = {}
    for name, control, seed in PLANS:
        if control not in saved:
            variant = plan.as_control(control) if control != "none" else plan
            shaped = shape_pairs(variant, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
            saved[control] = save_plan(workspace, variant, shaped, dataset, user="bench").plan_id
        plans[name] = (saved[control], seed)
    return workspace, audit_id, plans


def controls(results: dict) -> dict:
    """The controls' figures: the label-flip run's realised shifts against the original (unshaped,
    seed 0) prediction, and the shuffled run's R² and predictions."""
    import numpy as np

    from spectrum_core.metrics.agreement import agreement

    original = results["unshaped, seed 0"]["table"].set_index("concept_id")
    flipped = results["label flip"]["table"].set_index("concept_id")
    shared = original.index.intersection(flipped.index)
    against_original = agreement(original.loc[shared, "predicted"], flipped.loc[shared, "shift"])
    shuffled = results["shuffled"]
    return {
        "flip_agreement_with_original": against_original["sign_agreement"],
        "flip_agreement_with_its_own": results["label flip"]["summary"]["sign_agreement"],
        "flip_r2_with_original": against_original["r2"],
        "shuffled_r2": shuffled["summary"]["r2"],
        "shuffled_sign_agreement": shuffled["summary"]["sign_agreement"],
        "shuffled_mean_abs_prediction": float(np.abs(shuffled["table"]["predicted"]).mean()),
        "unshaped_mean_abs_prediction": float(np.abs(original["predicted"]).mean()),
    }


def print_tables(results: dict, checks: dict, spread) -> None:
    from spectrum_core.metrics.prediction import GROUP_HEAD, GROUP_SAMPLE
    from spectrum_core.metrics.prediction_report import interval_text

    groups = (GROUP_HEAD, GROUP_SAMPLE)

    print(
        "\n| run | concepts (moved) | R² | Spearman ρ | sign agreement | R², length alone | R², bag of words "
        "| R², length partialled out | SAE R² − better baseline | sign agreement, heads only "
        "| sign agreement, sampled families only |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for name, result in results.items():
        s = result["summary"]
        over = s["over_best_baseline"]
        difference = {key.replace("r2_difference", "d"): value for key, value in over.items()}
        cells = [
            f"{s['concepts']} ({s['moved']})",
            interval_text(s, "r2"),
            interval_text(s, "spearman"),
            interval_text(s, "sign_agreement"),
            interval_text(s["baselines"]["length"], "r2"),
            interval_text(s["baselines"]["words"], "r2"),
            interval_text(s["without_length"], "r2"),
            f"{interval_text(difference, 'd')} ({over['baseline']})",
            *(interval_text(s.get("by_group", {}).get(group, {}), "sign_agreement") for group in groups),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\ncontrols:", json.dumps({k: None if v is None else round(v, 3) for k, v in checks.items()}))
    if len(spread):
        print("\nseed spread:\n" + spread.to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "spectrum-bench-prediction")
    parser.add_argument("--preset", choices=sorted(RUNS), default="cpu")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "prediction-scatter.png")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "prediction.json")
    args = parser.parse_args()
    os.environ["SPECTRUM_WORKSPACE"] = str(args.workspace)
    import pandas as pd

    from spectrum_core.metrics.config import EvalConfig
    from spectrum_core.metrics.evaluate import run_evaluation
    from spectrum_core.metrics.prediction_report import seed_spread
    from spectrum_core.metrics.report import load_report
    from spectrum_core.tuning.config import DPORunConfig
    from spectrum_core.tuning.runs import run_tuning

    workspace, audit_id, plans = prepare(args.workspace)
    config = EvalConfig(**EVALS[args.preset])
    timings: dict[str, float] = {}
    started_all = started = time.perf_counter()
    run_evaluation(workspace, "base", config, audit_job_id=audit_id)
    timings["base evaluation"] = time.perf_counter() - started
    results, reports = {}, []
    for name, (plan_id, seed) in plans.items():
        started = time.perf_counter()
        key = run_tuning(workspace, DPORunConfig(plan_id=plan_id, seed=seed, **RUNS[args.preset])).name
        run = min(j.id for j in workspace.jobs("tune") if j.artifact_key == key)
        timings[f"{name}: tuning"] = time.perf_counter() - started
        started = time.perf_counter()
        folder = run_evaluation(workspace, run, config, audit_job_id=audit_id)
        timings[f"{name}: evaluation"] = time.perf_counter() - started
        report = load_report(folder)
        reports.append(report)
        results[name] = {
            "run": run,
            "summary": report["prediction"],
            "table": pd.read_parquet(folder / "shifts.parquet"),
        }
        print(
            f"{name} (run {run}): {json.dumps({k: v for k, v in report['prediction'].items() if k != 'surprises'})}",
            flush=True,
        )
    checks = controls(results)
    spread = seed_spread(reports, {r["target"]: results[n]["table"] for r, n in zip(reports, results)})
    print_tables(results, checks, spread)
    main_summary = results["unshaped, seed 0"]["summary"]
    verdicts = {target: bool(test(main_summary, checks)) for target, test in TARGETS.items()}
    for target, passed in verdicts.items():
        print(f"{'PASS' if passed else 'FAIL'}: {target}")
    timings["whole check"] = time.perf_counter() - started_all
    print("timings (s):", json.dumps({k: round(v) for k, v in timings.items()}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "preset": args.preset,
                "runs": {n: {"run": r["run"], "summary": r["summary"]} for n, r in results.items()},
                "controls": checks,
                "seed_spread": spread.to_dict(orient="records"),
                "targets": verdicts,
                "timings": timings,
            },
            indent=1,
            default=float,
        )
    )
    args.png.parent.mkdir(parents=True, exist_ok=True)
    scatter_png(results["unshaped, seed 0"]["table"], main_summary, "unshaped DPO, seed 0", args.png)
    print("results:", args.out, "scatter:", args.png)


if __name__ == "__main__":
    main()
