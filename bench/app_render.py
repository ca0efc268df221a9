"""Benchmark: how long each app page takes to run on the full HH audit (all 2,303 pairs).

Each page is run through Streamlit's AppTest in one server process, as a browser session would
be served: the first run reads the audit's tables into the process cache ("cold"), later runs
and later sessions find them there ("cached"; target ≤ 1 s). The Concepts page opens its
top concept's card; the Interventions page previews a plan with three decisions (reweight,
drop, amplify).

Run: `.venv/bin/python bench/app_render.py [--workspace DIR]`. Without a workspace that already
holds a full HH audit, one is made first (about 7 minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PAGES = ["dataset", "audit", "concepts", "interventions"]


def ensure_full_audit(root: Path) -> int:
    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.review import AuditView
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.workspace import Workspace

    workspace = Workspace(root)
    started = time.perf_counter()
    outcome = run_audit_in_workspace(workspace, HH, AuditConfig())
    if not outcome.reused:
        print(f"made the full HH audit in {time.perf_counter() - started:.0f} s")
    audit_id = min(
        j.id for j in workspace.jobs("audit") if j.artifact_key == outcome.artifact_key and j.status == "succeeded"
    )
    if not workspace.current_decisions(audit_id):
        view = AuditView.load(outcome.folder)
        directed = view.concepts[view.concepts["direction"] != "none"].sort_values("rank")["concept_id"]
        workspace.decide(audit_id, directed.iloc[0], "suppress", reason="bench", user="bench")
        drop = workspace.decide(audit_id, directed.iloc[1], "suppress", reason="bench", user="bench")
        workspace.set_intervention(drop, "drop", user="bench")
        workspace.decide(audit_id, directed.iloc[2], "amplify", strength=1.0, user="bench")
    return audit_id


def full_audit_plan(root: Path, newest: bool = True):
    """The full HH audit (made if missing) and a saved plan of it: the newest (or oldest) saved
    one, or one saved from its current decisions. Returns (workspace, audit id, audit folder,
    AuditView, dataset, SavedPlan)."""
    import pandas as pd

    from spectrum_core.audit.review import AuditView
    from spectrum_core.interventions import compile_plan, load_plan, save_plan, shape_pairs
    from spectrum_core.workspace import Workspace

    audit_id = ensure_full_audit(root)
    workspace = Workspace(root)
    folder = workspace.find_artifact(workspace.job(audit_id).artifact_key)
    view = AuditView.load(folder)
    dataset = workspace.load_dataset(workspace.job(audit_id).dataset_id)
    plans = workspace.plans(audit_id)  # newest first
    if plans:
        saved = load_plan(workspace, plans[0 if newest else -1]["id"])
    else:
        plan = compile_plan(workspace, audit_id, view)
        shaped = shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
        saved = save_plan(workspace, plan, shaped, dataset, user="bench")
    return workspace, audit_id, folder, view, dataset, saved


def time_page(name: str, audit_id: int, runs: int = 4) -> list[float]:
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(runs):  # a new session each time, like a reload
        at = AppTest.from_file(str(ROOT / "app_pages" / f"{name}.py"), default_timeout=600)
        at.query_params["audit"] = str(audit_id)
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        if at.exception:
            raise RuntimeError(f"{name}: {at.exception}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "spectrum-bench-full-hh")
    args = parser.parse_args()
    os.environ["SPECTRUM_WORKSPACE"] = str(args.workspace)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))  # the pages import each other as `pages.*`
    audit_id = ensure_full_audit(args.workspace)
    rows = []
    for name in PAGES:
        times = time_page(name, audit_id)
        rows.append((name, times[0], statistics.median(times[1:])))
    print("| page (full HH audit, 2,303 pairs) | first run, cold | cached, median of 3 |\n|---|---|---|")
    for name, cold, warm in rows:
        print(f"| {name.capitalize()} | {cold:.2f} s | {warm:.2f} s |")


if __name__ == "__main__":
    main()
