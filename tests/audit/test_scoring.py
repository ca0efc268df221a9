"""Scoring the pairs a sampled audit did not see: a tiny random Llama audits 40 of the 300
LLaMA-Factory pairs in a workspace, and the scoring stage measures decided concepts on the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectrum_core import constants as names
from spectrum_core.audit.config import AuditConfig, ScoringConfig
from spectrum_core.audit.review import AuditView
from spectrum_core.audit.scores import PairScores, find_scores
from spectrum_core.audit.scoring import run_scoring
from spectrum_core.interventions import association, compile_plan, save_plan, shape_pairs, with_scores
from spectrum_core.jobs import job_dir
from spectrum_core.workspace import Workspace
from tests.conftest import LLAMAFACTORY_FILE

N_AUDITED = 40  # of the LLaMA-Factory demo's 295 pairs


@pytest.fixture(scope="module")
def sampled_audit(tiny_model, tmp_path_factory):
    """A workspace with a sampled tiny-model audit (the model saved, so a job can load it)."""
    from spectrum_core.audit.runner import run_audit_in_workspace

    model_dir = tmp_path_factory.mktemp("tiny-model")
    tiny_model.model.save_pretrained(model_dir)
    tiny_model.tokenizer.save_pretrained(model_dir)
    config = AuditConfig(
        model=str(model_dir),
        device="cpu",
        dtype="float32",
        max_pairs=N_AUDITED,
        max_prompt_tokens=64,
        max_response_tokens=64,
        sae_training_tokens=8_000,
        sae_seeds=0,
        topics=0,
        null_runs=0,
        labelled_concepts=20,
        llm_labelled_concepts=0,
    )
    workspace = Workspace(tmp_path_factory.mktemp("ws"))
    outcome = run_audit_in_workspace(workspace, LLAMAFACTORY_FILE, config)
    assert outcome is not None
    view = AuditView.load(outcome.folder)
    return workspace, outcome.job_id, view


def _directed(view: AuditView, kind: str) -> str:
    rows = view.concepts[(view.concepts["kind"] == kind) & (view.concepts["direction"] != "none")]
    return str(rows.sort_values("rank")["concept_id"].iloc[0])


def test_a_plan_after_a_sampled_audit_covers_every_pair_once_the_rest_is_scored(sampled_audit):
    workspace, audit_id, view = sampled_audit
    concept = _directed(view, "sae")
    workspace.decide(audit_id, concept, "suppress", user="ana")
    dataset = workspace.load_dataset(workspace.job(audit_id).dataset_id)
    everything = pd.Index(dataset.pairs["pair_id"])
    n_rest = len(everything) - N_AUDITED
    plan = compile_plan(workspace, audit_id, view)

    # Before scoring: the plan acts on the audited pairs only, and says how many it leaves.
    unscored_plan, none = with_scores(workspace, plan)
    assert none is None and unscored_plan.scores_artifact is None
    before = shape_pairs(plan, everything, view.pair_ids, view.delta_array).summary()
    assert (before["audited"], before["scored"], before["unscored"]) == (N_AUDITED, 0, n_rest)

    outcome = run_scoring(workspace, ScoringConfig(audit=audit_id, device="cpu"))
    assert outcome is not None and not outcome.reused
    scored_plan, scores = with_scores(workspace, plan)
    assert scores is not None and scored_plan.scores_artifact == scores.key == outcome.key
    assert set(scores.pair_ids) == set(everything) - set(view.pair_ids)

    shaped = shape_pairs(scored_plan, everything, view.pair_ids, view.delta_array, scores)
    summary = shaped.summary()
    assert (summary["audited"], summary["scored"], summary["unscored"]) == (N_AUDITED, n_rest, 0)
    table = shaped.table.set_index("pair_id").loc[scores.pair_ids]
    delta = scores.delta_array(concept)
    # The reweighting reaches the scored pairs where the concept differs, and balances it over
    # every covered pair: it no longer predicts the label there.
    assert (table["weight"].sub(1).abs() > 1e-6).to_numpy()[delta != 0].any()
    covered = pd.Index(view.pair_ids).append(scores.pair_ids)
    weights = shaped.table.set_index("pair_id").loc[covered, "weight"].to_numpy()
    both = np.concatenate([view.delta_array(concept), delta])
    assert association(both, weights)["share_chosen_more"] == pytest.approx(0.5, abs=1e-3)

    saved = save_plan(workspace, scored_plan, shaped, dataset)
    text = saved.yaml.read_text()
    assert f"scores_artifact: {scores.key}" in text and f"scored: {n_rest}" in text
    assert "unscored: 0" in text and scored_plan.plan_hash != plan.plan_hash
    shaping = saved.shaping()
    assert shaping["scored"].sum() == n_rest and len(shaping) == len(everything)


def test_scored_delta_of_audited_pairs_equals_the_audits(sampled_audit):
    """Scoring the audited pairs as a check gives back the audit's own Δ, for a token latent, a
    difference latent, a probe and a family (its members' weighted sum)."""
    workspace, audit_id, view = sampled_audit
    concepts = view.concepts
    token = _directed(view, "sae")
    difference = str(concepts[concepts["mode"] == "difference"].sort_values("rank")["concept_id"].iloc[0])
    probe = "probe:length_tokens"
    family = _directed(view, "family")
    chosen = (token, difference, probe, family)
    outcome = run_scoring(workspace, ScoringConfig(audit=audit_id, concepts=chosen, include_audited=True, device="cpu"))
    assert outcome is not None
    scores = PairScores.load(outcome.folder)
    assert len(scores.pair_ids) == len(workspace.load_dataset(workspace.job(audit_id).dataset_id))
    positions = scores.pair_ids.get_indexer(view.pair_ids)
    for concept_id in chosen:
        audit = view.delta_array(concept_id)
        assert np.abs(audit).sum() > 0, concept_id
        np.testing.assert_allclose(scores.delta_array(concept_id)[positions], audit, rtol=1e-4, atol=1e-4)
    assert find_scores(workspace, audit_id, [probe]) is not None
    assert find_scores(workspace, audit_id, ["token:999999"]) is None


class _StopWhenAShardIsWritten:
    """A progress callback that stops the job (as Ctrl-C does) once its first shard is on disk."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace

    def __call__(self, stage: str, done: int, total: int, **_) -> None:
        jobs = self.workspace.jobs("score")
        folder = job_dir(self.workspace, jobs[0].id) / names.SCORING_ACTIVATIONS_DIR
        if stage == "activations" and (folder / names.ACTIVATION_SHARD_FILE.format(index=0)).exists():
            raise KeyboardInterrupt


def test_a_stopped_scoring_job_resumes(sampled_audit):
    workspace, audit_id, view = sampled_audit
    # Every pair (the audited ones too): 590 responses, two shards of 512.
    concepts = (_directed(view, "sae"), "probe:refusal")
    config = ScoringConfig(audit=audit_id, concepts=concepts, include_audited=True, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        run_scoring(workspace, config, progress=_StopWhenAShardIsWritten(workspace))
    job = workspace.jobs("score")[0]
    assert job.status == "stopped"
    folder = job_dir(workspace, job.id) / names.SCORING_ACTIVATIONS_DIR
    first, second = (folder / names.ACTIVATION_SHARD_FILE.format(index=i) for i in (0, 1))
    assert first.exists() and not second.exists()
    written = first.stat().st_mtime_ns

    outcome = run_scoring(workspace, config, job_id=job.id)
    assert outcome is not None and outcome.job_id == job.id and not outcome.reused
    assert workspace.job(job.id).status == "succeeded"
    assert first.stat().st_mtime_ns == written and second.exists()  # the first shard was kept, not redone
    scores = PairScores.load(outcome.folder)
    assert len(scores.pair_ids) == len(workspace.load_dataset(workspace.job(audit_id).dataset_id))


def test_score_command_scores_then_reuses(sampled_audit, capsys):
    from spectrum_core.cli import main

    workspace, audit_id, _ = sampled_audit
    argv = ["--workspace", str(workspace.root), "score", "--audit", str(audit_id), "--concepts", "probe:refusal"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert "Scoring finished" in capsys.readouterr().out
    assert main([*argv, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "reused the finished scoring" in out and f"beside the audit's {N_AUDITED}" in out


def test_score_command_needs_an_audit_with_decisions(tmp_path, capsys):
    from spectrum_core.cli import main

    assert main(["--workspace", str(tmp_path / "ws"), "score"]) == 2
    assert "give --audit JOB" in capsys.readouterr().err
