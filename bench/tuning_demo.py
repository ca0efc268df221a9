"""Benchmark: the shaped reward on the full HH audit (accuracy and concept dependence, before and
after shaping) and the wall time of each tuning method's cpu-demo preset with the bundled model.

Uses the newest saved plan of the workspace's audit, or saves one from its current decisions
(bench/app_render.py makes three: suppress with reweight, suppress with drop, amplify).

Run: `.venv/bin/python bench/tuning_demo.py [--workspace DIR] [--methods dpo,reset,spectrum]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "spectrum-bench-full-hh")
    parser.add_argument("--methods", default="dpo,reset,spectrum")
    args = parser.parse_args()
    os.environ["SPECTRUM_WORKSPACE"] = str(args.workspace)
    sys.path.insert(0, str(ROOT / "bench"))
    from app_render import full_audit_plan

    from spectrum_core.models import load_model
    from spectrum_core.reward import RewardConfig, fit_shaped_reward
    from spectrum_core.tuning.config import preset
    from spectrum_core.tuning.runs import run_tuning

    workspace, _, folder, _, dataset, saved = full_audit_plan(args.workspace)
    plan = saved.plan
    print("plan:", [(c.concept_id, c.action, c.intervention, c.label) for c in plan.concepts])

    loaded = load_model("bundled")
    started = time.perf_counter()
    _, report = fit_shaped_reward(loaded, folder, plan, dataset.pairs, saved.shaping(), RewardConfig())
    seconds = time.perf_counter() - started
    print(
        f"\n| shaped reward on the full HH audit ({report.n_train} train pairs, {report.n_held_out} held out; "
        f"fit {seconds:.0f} s) | before | after |\n|---|---|---|"
    )
    print(f"| held-out pairwise accuracy | {report.accuracy_before:.3f} | {report.accuracy_after:.3f} |")
    for row in report.dependence:
        label = next(c.label for c in plan.concepts if c.concept_id == row["concept_id"])
        print(
            f"| dependence on {row['concept_id']} ({row['action']}; {label[:40]}) | {row['before']:+.3f} | "
            f"{row['after']:+.3f} |"
        )

    print("\n| method, cpu-demo preset, bundled model | wall time |\n|---|---|")
    for method in [m for m in args.methods.split(",") if m]:
        config = preset(method, "cpu-demo")
        config.plan_id = saved.plan_id
        config.seed = int(time.time()) % 100_000  # a fresh run, not a reused one
        started = time.perf_counter()
        run_tuning(workspace, config)
        print(
            f"| {method} ({config.max_steps} steps, batch {config.batch_size}) | "
            f"{(time.perf_counter() - started) / 60:.1f} min |",
            flush=True,
        )


if __name__ == "__main__":
    main()
