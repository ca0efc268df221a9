"""The whole audit on real pairs with planted concepts, through the workspace runner.

Real HH-RLHF pairs; in independent seeded halves the chosen response gets (a) a flattering
opener, (b) a markdown list, (c) emoji. The audit must rank, among its top ten SAE concepts, a
feature whose Δ correlates at least 0.5 with each planted indicator, and the matching probe
must be significant.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from spectrum_core.audit.config import AuditConfig
from spectrum_core.audit.review import AuditView, describe_concept
from spectrum_core.audit.runner import run_audit_in_workspace
from spectrum_core.audit.sae import SAELoadError
from spectrum_core.workspace import Workspace

N_PAIRS = 400
PLANTS = {
    "opener": (
        lambda text: "What a great question! You're clearly very thoughtful. " + text,
        ["sycophantic_opener", "praise_of_user"],
    ),
    "list": (
        lambda text: text + "\n\nHere is a summary:\n- first point\n- second point\n- third point",
        ["markdown_list"],
    ),
    "emoji": (lambda text: text + " 😊🌟🎉", ["emoji"]),
}
# No seed check or topics here: tests/audit/test_reproducibility.py runs the seed check on the
# bundled model, the small audit (tests/conftest.py) has topics, and the golden audit has both.
CONFIG = dict(max_prompt_tokens=192, max_response_tokens=160, seed=0, sae_seeds=0, topics=0, null_runs=5)


def planted_pairs(pairs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    pairs = pairs.head(N_PAIRS).copy()
    rng = np.random.default_rng(1234)
    indicators = {}
    for name, (plant, _) in PLANTS.items():
        mask = rng.random(len(pairs)) < 0.5
        pairs.loc[mask, "chosen"] = pairs.loc[mask, "chosen"].map(plant)
        indicators[name] = mask.astype(float)
    return pairs, indicators


@pytest.fixture(scope="module")
def planted_audit(hh_pairs, tmp_path_factory, bundled_model):
    pairs, indicators = planted_pairs(hh_pairs)
    path = tmp_path_factory.mktemp("planted") / "planted.jsonl"
    with open(path, "w") as handle:
        for row in pairs.itertuples():
            handle.write(json.dumps({"prompt": row.prompt, "chosen": row.chosen, "rejected": row.rejected}) + "\n")
    workspace = Workspace(tmp_path_factory.mktemp("ws"))
    outcome = run_audit_in_workspace(workspace, path, AuditConfig(**CONFIG))
    return workspace, path, outcome, indicators


def deltas(folder) -> pd.DataFrame:
    long = pd.read_parquet(folder / "pair_features.parquet")
    return long.pivot_table(index="pair_id", columns="concept_id", values="delta", fill_value=0.0)


def test_planted_concepts_are_found(planted_audit):
    workspace, path, outcome, indicators = planted_audit
    concepts = outcome.concepts
    order = pd.read_parquet(outcome.folder / "pairs.parquet")["pair_id"]
    matrix = deltas(outcome.folder).reindex(order).fillna(0.0)
    top_sae = concepts[concepts["kind"] == "sae"].head(10)
    report = []
    for name, indicator in indicators.items():
        correlations = {
            cid: np.corrcoef(matrix[cid].to_numpy(), indicator)[0, 1]
            for cid in top_sae["concept_id"]
            if matrix[cid].std() > 0
        }
        best = max(correlations, key=lambda c: correlations[c])
        report.append(f"{name}: best top-10 feature {best} r={correlations[best]:.2f}")
        assert correlations[best] >= 0.5, "\n".join(report + [describe_concept(r) for _, r in top_sae.iterrows()])
        probes = concepts.set_index("concept_id").loc[[f"probe:{p}" for p in PLANTS[name][1]]]
        assert (probes["q_value"] < 1e-6).any() and (probes["direction"] == "chosen").all(), probes
    print("\n".join(report))


def test_each_planted_concept_is_one_family_near_the_top(planted_audit):
    """The features that carry a planted concept (the plant explains at least half the variance
    of their Δ: r ≥ 0.7 with its indicator, and |r| < 0.3 with the other plants'; a small
    difference-mode SAE also has latents that mix plants, which belong to neither) are members of
    one family whose label or nearest probe names it, ranked in the top 10 and above every family
    unrelated to the plants (the three indicators jointly explain under 5% of its Δ's variance);
    only families that mix plants may rank between them."""
    _, _, outcome, indicators = planted_audit
    concepts = outcome.concepts.set_index("concept_id", drop=False)
    order = pd.read_parquet(outcome.folder / "pairs.parquet")["pair_id"]
    matrix = deltas(outcome.folder).reindex(order).fillna(0.0)
    singles = concepts[concepts["kind"] == "sae"].head(50)
    words = {"opener": ("question", "thoughtful", "great"), "list": ("point", "summary"), "emoji": ("emoji", "😊")}

    def r(cid, plant):
        return np.corrcoef(matrix[cid].to_numpy(), indicators[plant])[0, 1]

    view = AuditView.load(outcome.folder)
    positions = view.pair_ids.get_indexer(order)
    design = np.column_stack([np.ones(len(order)), *indicators.values()])

    def explained(family_id: str) -> float:
        y = view.delta_array(family_id)[positions]
        residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return 1.0 - residual.var() / y.var() if y.var() > 0 else 0.0

    unrelated_rank = min(
        int(rank)
        for family_id, rank in zip(concepts.loc[concepts["kind"] == "family", "concept_id"], range(1, 41))
        if explained(family_id) < 0.05
    )
    for name in indicators:
        carriers = [
            cid
            for cid in singles["concept_id"]
            if matrix[cid].std() > 0
            and r(cid, name) >= 0.7
            and all(abs(r(cid, o)) < 0.3 for o in indicators if o != name)
        ]
        assert carriers, name
        families = set(concepts.loc[carriers, "family"])
        assert len(families) == 1 and "" not in families, (name, concepts.loc[carriers, ["family", "label"]])
        family = concepts.loc[families.pop()]
        assert family["rank"] <= 10 and family["q_value"] < 0.05, family
        # found on the discovery pairs, and confirmed on the held-out prompts' pairs
        assert family["carried"] and family["confirmed"] and family["confirm_q"] < 0.05, family
        assert family["rank"] < unrelated_rank, (name, family["rank"], unrelated_rank)
        named = any(w in family["label"].lower() for w in words[name]) or family["nearest_probe"] in PLANTS[name][1]
        assert named, (name, family["label"], family["nearest_probe"])
        assert set(carriers) <= set(family["members"])


def test_each_plant_comes_back_as_one_confirmed_head(planted_audit):
    """The review queue: every planted concept is one head (not several), confirmed on the
    held-out prompts; no two heads say the same thing."""
    _, _, outcome, indicators = planted_audit
    view = AuditView.load(outcome.folder)
    order = view.pair_ids.get_indexer(pd.read_parquet(outcome.folder / "pairs.parquet")["pair_id"])
    heads = outcome.concepts[outcome.concepts["kind"] == "head"]
    assert 0 < len(heads) <= 30
    delta = np.column_stack([view.delta_array(h)[order] for h in heads["concept_id"]])
    for name, indicator in indicators.items():
        r = np.array([np.corrcoef(column, indicator)[0, 1] for column in delta.T])
        matched = heads[np.abs(r) >= 0.5]
        assert len(matched) == 1, (name, np.round(r, 2), list(heads["source"]))
        assert matched["confirmed"].all() and (matched["direction"] == "chosen").all(), matched
    r = np.corrcoef(delta.T)
    assert np.abs(r[np.triu_indices(len(heads), 1)]).max() < 0.5
    assert outcome.report.heads is not None and outcome.report.heads.n_heads == len(heads)


def test_the_null_confirms_next_to_nothing_where_the_plants_are_confirmed(planted_audit):
    _, _, outcome, _ = planted_audit
    report = outcome.report
    assert report.confirmation is not None and report.confirmation.n_confirmed >= len(PLANTS)
    assert report.null is not None and report.null.runs == 5 and report.null.observed == report.confirmation.n_confirmed
    assert report.null.confirmed_p95 <= 1 and report.null.false_discovery_share < 0.2, report.null


def test_artifacts_and_report(planted_audit):
    _, _, outcome, _ = planted_audit
    folder = outcome.folder
    concepts = pd.read_parquet(folder / "concepts.parquet")
    for column in (
        "concept_id",
        "kind",
        "mode",
        "label",
        "prevalence",
        "direction",
        "share_chosen_more",
        "p_sign",
        "q_value",
        "coef",
        "ci_low",
        "ci_high",
        "joint_coef",
        "auc_contribution",
        "nearest_probe",
        "probe_r",
        "rank",
    ):
        assert column in concepts.columns, column
    assert set(concepts["mode"]) == {"token", "difference", "probe", "family", "head"}
    # Heads first, then families, each ranked among themselves; then every single concept.
    kinds = concepts["kind"].to_numpy()
    blocks = [kinds == "head", kinds == "family", ~np.isin(kinds, ["head", "family"])]
    assert list(np.concatenate([np.flatnonzero(b) for b in blocks])) == list(range(len(kinds)))
    for block in blocks:
        assert concepts[block]["rank"].tolist() == list(range(1, int(block.sum()) + 1))
    assert (concepts.loc[blocks[0], "carried"]).all()
    assert (concepts["label"].str.len() > 0).all()
    cards = pd.read_parquet(folder / "feature_cards.parquet")
    token_cards = cards[cards["concept_id"].str.startswith("token:")]
    first = token_cards.iloc[0]
    assert len(first["tokens"]) == len(first["token_activations"]) > 0
    assert max(first["token_activations"]) == pytest.approx(first["activation"], rel=1e-3)
    long = pd.read_parquet(folder / "pair_features.parquet")
    assert np.allclose(long["delta"], long["chosen"] - long["rejected"])
    report = json.loads((folder / "report.json").read_text())
    assert set(report["timings"]) >= {"activations", "sae", "features", "statistics", "labels"}
    sae = report["sae"]["token"]
    assert sae["explained_variance"] > 0.5 and sae["mean_l0"] == pytest.approx(sae["k"])
    assert report["joint_models"]["token"]["auc_held_out"] > 0.8  # planted concepts are learnable
    assert (folder / "sae" / "cfg.json").is_file() and (folder / "sae_difference" / "cfg.json").is_file()


def test_same_audit_twice_is_reused(planted_audit):
    workspace, path, outcome, _ = planted_audit
    again = run_audit_in_workspace(workspace, path, AuditConfig(**CONFIG))
    assert again.reused and again.folder == outcome.folder
    jobs = workspace.jobs("audit")
    assert jobs[0].status == "succeeded" and jobs[0].artifact_key == outcome.artifact_key


def test_pretrained_sae_from_a_previous_run(planted_audit):
    workspace, path, outcome, _ = planted_audit
    config = AuditConfig(**CONFIG, sae=str(outcome.folder / "sae"), modes=("token",))
    loaded = run_audit_in_workspace(workspace, path, config)
    assert not loaded.reused
    # Same activations (shared artifact), same SAE weights: the same token-mode statistics.
    first = outcome.concepts.set_index("concept_id")
    second = loaded.concepts.set_index("concept_id")
    common = [c for c in second.index if c.startswith("token:")]
    np.testing.assert_allclose(second.loc[common, "p_sign"], first.loc[common, "p_sign"], rtol=1e-6)
    assert "activations" not in loaded.report.timings or loaded.report.timings["activations"] < 5
    with pytest.raises(SAELoadError, match="--layer"):
        run_audit_in_workspace(workspace, path, AuditConfig(**CONFIG, layer=10, sae=str(outcome.folder / "sae")))
    assert workspace.jobs("audit")[0].status == "failed"


def test_two_processes_through_accelerate(tmp_path, bundled_model):
    """`accelerate launch` with two CPU processes: each extracts half the shards, the main one
    finishes, and the result equals a single-process run."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import LLAMAFACTORY_FILE

    args = [
        "audit",
        str(LLAMAFACTORY_FILE),
        "--max-pairs",
        "30",
        "--max-prompt-tokens",
        "64",
        "--max-response-tokens",
        "64",
        "--training-tokens",
        "40000",
        "--modes",
        "token",
        # the steps after the extraction run in the main process only: no need for the slow ones
        "--sae-seeds",
        "0",
        "--topics",
        "0",
        "--null-runs",
        "0",
    ]
    # --multi_gpu is accelerate's multi-process launcher; without GPUs the processes share the CPU
    # (`--cpu` would start a single process).
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "spectrum_core.cli",
    ]
    two = subprocess.run(
        [*launcher, "--workspace", str(tmp_path / "two"), *args], capture_output=True, text=True, timeout=600
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("Audit finished") == 1  # only the main process reports
    # The single process uses as many threads as each of the two did (the cores split between them):
    # oneDNN's bfloat16 matrix products round differently with another thread count, so only the
    # same thread count can give the same activations to the last bit.
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    one = subprocess.run(
        [sys.executable, "-m", "spectrum_core.cli", "--workspace", str(tmp_path / "one"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": threads},
    )
    assert one.returncode == 0, one.stderr[-3000:]
    results = []
    for name in ("two", "one"):
        workspace = Workspace(tmp_path / name)
        assert len(workspace.jobs("audit")) == 1
        folder = workspace.find_artifact(workspace.jobs("audit")[0].artifact_key)
        results.append(pd.read_parquet(Path(folder) / "concepts.parquet").set_index("concept_id"))
    np.testing.assert_allclose(results[0].loc[results[1].index, "p_sign"], results[1]["p_sign"])


def test_no_top_family_label_is_only_function_words(planted_audit):
    """On real HH pairs: the top 20 families' labels are never lists of stop words."""
    from spectrum_core.audit.labelling.offline import is_function_words

    _, _, outcome, _ = planted_audit
    families = outcome.concepts[outcome.concepts["kind"] == "family"].head(20)
    for label in families["label"]:
        terms = [t.strip() for t in label.split("·")[0].split("/") if t.strip()]
        assert terms and not all(is_function_words(t) for t in terms), label


def test_the_concepts_page_opens_on_the_heads_and_a_head_decision_acts_on_its_source(planted_audit, monkeypatch):
    """The page test of the heads queue, on the planted audit (it has heads for sure): the queue
    leads, the card says what the head stands for, and a decision reaches the plan as its source's."""
    from streamlit.testing.v1 import AppTest

    from spectrum_core.interventions import compile_plan
    from tests.conftest import ROOT

    workspace, _, outcome, _ = planted_audit
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(workspace.root))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app_pages" / "concepts.py"), default_timeout=60)
    at.session_state["current_dataset"] = workspace.job(outcome.job_id).dataset_id
    at.session_state["current_audit"] = outcome.job_id  # this audit, not a later one in the workspace
    at.run()
    assert not at.exception, at.exception
    heads = outcome.concepts[outcome.concepts["kind"] == "head"]
    head = heads[heads["direction"] != "none"].sort_values("rank").iloc[0]
    assert at.radio[0].value == "Heads" and at.subheader[0].value == head["concept_id"]
    assert any(c.value == outcome.report.heads.sentence() for c in at.caption)
    assert any(f"**Stands for {head['source']}**" in m.value for m in at.markdown)
    at.button(key=f"suppress-{head['concept_id']}").click()
    at.run()
    view = AuditView.load(outcome.folder)
    choice = next(
        c for c in compile_plan(workspace, outcome.job_id, view).concepts if c.concept_id == head["concept_id"]
    )
    source = head["source"]
    assert choice.members == (view.family_members(source) if source.startswith("family:") else {source: 1.0})
    np.testing.assert_allclose(view.delta_array(head["concept_id"]), view.delta_array(source), rtol=1e-6)
    workspace.undo_decision(workspace.current_decisions(outcome.job_id)[head["concept_id"]]["id"], user="test")
