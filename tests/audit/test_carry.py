"""Forced reruns and decisions across audits: a rerun is a new version beside the old one, a
decision names the version it was made on, and decisions reach a newer audit only through a
match by what the concepts measure, shown before it is applied."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from spectrum_core.audit.carry import CARRY_R, carry_decisions, carry_proposal
from spectrum_core.audit.pipeline import AuditConfig
from spectrum_core.audit.review import AuditView
from spectrum_core.audit.runner import AuditStage, run_audit_in_workspace
from spectrum_core.stages import stage_status
from tests.conftest import LLAMAFACTORY_FILE

SMALL = AuditConfig(
    max_pairs=60, max_prompt_tokens=96, max_response_tokens=96, sae_training_tokens=60_000, null_runs=3
)  # the small audit's settings (tests/conftest.py)


def decide_top(workspace, job_id: int) -> tuple[str, str]:
    """Suppress the first head (a family when there is none) and keep a single token concept."""
    view = AuditView.load(workspace.find_artifact(workspace.job(job_id).artifact_key))
    table = view.concepts
    head = table[table["kind"].isin(["head", "family"])]["concept_id"].iloc[0]
    token = table[(table["mode"] == "token") & (table["direction"] != "none")].sort_values("rank")["concept_id"].iloc[0]
    workspace.decide(job_id, head, "suppress", reason="too eager")
    workspace.decide(job_id, token, "keep")
    return head, token


def test_a_forced_rerun_is_a_new_version_and_decisions_follow_only_through_a_match(small_audit):
    workspace, first = small_audit
    head, token = decide_top(workspace, first.job_id)
    assert {d["artifact_key"] for d in workspace.decisions(first.job_id)} == {first.artifact_key}
    old_folder = workspace.find_artifact(first.artifact_key)

    again = run_audit_in_workspace(workspace, LLAMAFACTORY_FILE, SMALL, force=True)
    assert again.artifact_key == f"{first.artifact_key}.v2" and again.job_id != first.job_id
    assert old_folder.exists() and head in AuditView.load(old_folder).concepts.index  # kept, readable
    assert workspace.artifact_versions(first.artifact_key) == [first.artifact_key, again.artifact_key]
    # What the app and the CLI find for these settings is the newest version.
    assert stage_status(workspace, AuditStage(LLAMAFACTORY_FILE, SMALL))[0] == again.folder
    assert run_audit_in_workspace(workspace, LLAMAFACTORY_FILE, SMALL).artifact_key == again.artifact_key
    # Nothing is carried by id: the new version starts with no decisions.
    assert workspace.current_decisions(again.job_id) == {}

    # The same settings give the same concepts: every decision matches itself at r = 1.
    proposal = carry_proposal(workspace, first.job_id, again.job_id)
    assert [(m.concept_id, m.matched) for m in proposal] == [(head, head), (token, token)]
    assert all(m.carried and m.r > 0.999 for m in proposal)
    written = carry_decisions(workspace, first.job_id, again.job_id, proposal, user="ana")
    carried = workspace.current_decisions(again.job_id)
    assert len(written) == 2 and carried[head]["action"] == "suppress" and carried[token]["action"] == "keep"
    assert carried[head]["stats"]["carried_from"]["concept_id"] == head
    assert carried[head]["reason"].startswith(f"carried from audit #{first.job_id}'s {head}")
    assert carried[head]["artifact_key"] == again.artifact_key and carried[head]["decided_by"] == "ana"
    # Carrying again writes nothing: the newer audit has its own decisions now.
    assert not any(m.carried for m in carry_proposal(workspace, first.job_id, again.job_id))


def test_a_retrained_sae_gets_decisions_by_what_concepts_measure_not_by_id(small_audit):
    workspace, first = small_audit
    head, token = decide_top(workspace, first.job_id)
    # Another SAE on the same pairs: token ids now name other latents.
    retrained = run_audit_in_workspace(
        workspace, LLAMAFACTORY_FILE, replace(SMALL, sae_k=8, null_runs=0, sae_seeds=0, topics=0)
    )
    proposal = {m.concept_id: m for m in carry_proposal(workspace, first.job_id, retrained.job_id)}
    older = AuditView.load(workspace.find_artifact(first.artifact_key))
    newer = AuditView.load(retrained.folder)
    for match in proposal.values():
        if match.matched is None:
            continue
        # The offered concept is the one whose Δ follows the decided one's, wherever its id is.
        r = np.corrcoef(older.delta_array(match.concept_id), newer.delta_array(match.matched))[0, 1]
        assert abs(r - match.r) < 1e-6
        assert match.carried == (match.r >= CARRY_R and match.same_direction)
    written = carry_decisions(workspace, first.job_id, retrained.job_id, list(proposal.values()))
    assert set(workspace.current_decisions(retrained.job_id)) == {
        m.matched for m in proposal.values() if m.carried
    } and len(written) == sum(m.carried for m in proposal.values())
