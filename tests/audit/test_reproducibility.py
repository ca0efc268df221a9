"""The same audit in new processes, with one thread and with two, tells the same story.

oneDNN's bfloat16 products round differently with another thread count, so the activations differ
in their last bits and the SAE trained on them ends in other latents, as an SAE trained with
another seed does. The stated tolerance: of the top families that SAEs retrained with other seeds all
find again, at least three (the planted concepts) are found by the other run too (a family whose
family-score Δ correlates at least SAME_FAMILY_R with its own over the same pairs, leaning the
same way, within RANK_SHIFT ranks), and every one of them has a match leaning the same way that
correlates at least MERGED_R (a weak family can merge into a neighbour)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spectrum_core.audit.reproducibility import match_families
from spectrum_core.audit.review import AuditView
from spectrum_core.workspace import Workspace
from tests.audit.test_pipeline import planted_pairs

TOP = 5
RANK_SHIFT = 2
# The least correlation of a stable family with its best match in the other run (merged into a
# neighbour: measured 0.63 for a weak "great question" praise family at rank 5).
MERGED_R = 0.5


def test_a_view_matches_itself(small_audit):
    _, outcome = small_audit
    view = AuditView.load(outcome.folder)
    matches = match_families(view, view, top=TOP)
    assert [m.family for m in matches] == [m.matched for m in matches]
    assert all(m.same and m.r == pytest.approx(1.0) and m.rank == m.matched_rank for m in matches)


def test_one_thread_and_two_threads_give_the_same_families(hh_pairs, tmp_path, bundled_model):
    pairs, _ = planted_pairs(hh_pairs)
    path = tmp_path / "planted.jsonl"
    with open(path, "w") as handle:
        for row in pairs.head(160).itertuples():
            handle.write(json.dumps({"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected}) + "\n")
    args = ["audit", str(path), "--max-prompt-tokens", "96", "--max-response-tokens", "96", "--topics", "0"]
    args += ["--sae-seeds", "2"]  # stable = found again by both other seeds
    args += ["--null-runs", "0"]  # the null runs do not change the families compared here
    views = []
    for threads in ("1", "2"):
        workspace = tmp_path / f"threads-{threads}"
        done = subprocess.run(
            [sys.executable, "-m", "spectrum_core.cli", "--workspace", str(workspace), *args],
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "OMP_NUM_THREADS": threads},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        job = Workspace(workspace).jobs("audit")[0]
        views.append(AuditView.load(Workspace(workspace).find_artifact(job.artifact_key)))
    matches = match_families(views[0], views[1], top=TOP)
    stability = views[0].concepts["seed_stability"]
    report = "\n".join(
        f"{m.rank} {m.family} (seeds {stability[m.family]:.0%}) → {m.matched_rank} {m.matched} r={m.r:.3f} {m.label}"
        for m in matches
    )
    stable = [m for m in matches if stability[m.family] == 1.0]
    assert len(stable) >= 3, report  # the planted concepts at least
    exact = [m for m in stable if m.same and abs(m.matched_rank - m.rank) <= RANK_SHIFT]
    assert len(exact) >= 3, report  # the planted ones are found again, as they were
    significant = views[0].concepts["q_value"] < 0.05
    for m in stable:
        # A seed-stable family near the threshold that forms families can merge into a neighbour
        # under the other thread count; it is then still there, partly, leaning the same way when
        # it leans at all (a family the length-aware test does not back, length in disguise with a
        # 50/50 split, may tip either way on rounding).
        assert m.r >= MERGED_R, report
        assert m.same_direction or not significant[m.family], report
