"""The audit stage's keys: everything that changes the output is in them, credentials never."""

from __future__ import annotations

import pytest

import spectrum_core.audit.runner as runner
from spectrum_core.audit.config import AuditConfig
from spectrum_core.audit.runner import AuditStage
from spectrum_core.workspace import Workspace, canonical_json
from tests.conftest import LLAMAFACTORY_FILE


def keys(workspace: Workspace, config: AuditConfig) -> tuple[str, str, dict]:
    stage = AuditStage(LLAMAFACTORY_FILE, config)
    stage.prepare(workspace)
    key, inputs = stage.key(workspace)
    return key, stage.activations_key()[0], inputs


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    for name in ("SPECTRUM_LLM_BASE_URL", "SPECTRUM_LLM_MODEL", "SPECTRUM_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return Workspace(tmp_path / "ws")


def test_the_labelling_endpoint_is_in_the_audit_key_and_its_credentials_are_not(workspace, monkeypatch):
    config = AuditConfig(max_pairs=20)
    offline, activations, _ = keys(workspace, config)
    monkeypatch.setenv("SPECTRUM_LLM_BASE_URL", "https://labels.example/v1")
    monkeypatch.setenv("SPECTRUM_LLM_MODEL", "model-a")
    with_a, activations_a, _ = keys(workspace, config)
    assert with_a != offline and activations_a == activations  # labels do not touch activations
    monkeypatch.setenv("SPECTRUM_LLM_MODEL", "model-b")
    assert keys(workspace, config)[0] not in (offline, with_a)
    monkeypatch.setenv("SPECTRUM_LLM_MODEL", "model-a")
    monkeypatch.setenv("SPECTRUM_LLM_BASE_URL", "https://ana:s3cret@labels.example/v1?key=t0ken")
    monkeypatch.setenv("SPECTRUM_LLM_API_KEY", "sk-other")
    same, _, inputs = keys(workspace, config)
    assert same == with_a  # the same endpoint and model, other credentials
    text = canonical_json(inputs)
    assert "s3cret" not in text and "t0ken" not in text and "sk-other" not in text
    # With no LLM labels asked for, the endpoint changes nothing.
    no_llm = AuditConfig(max_pairs=20, llm_labelled_concepts=0)
    with_endpoint = keys(workspace, no_llm)[0]
    monkeypatch.delenv("SPECTRUM_LLM_BASE_URL")
    assert keys(workspace, no_llm)[0] == with_endpoint


def test_a_library_version_or_the_code_is_in_both_keys(workspace, monkeypatch):
    config = AuditConfig(max_pairs=20)
    audit, activations, inputs = keys(workspace, config)
    assert inputs["made_by"]["versions"]["torch"] and len(inputs["made_by"]["code"]) == 16
    real = runner.library_versions
    monkeypatch.setattr(runner, "library_versions", lambda names: {**real(names), "transformers": "0.0"})
    other_audit, other_activations, _ = keys(workspace, config)
    assert other_audit != audit and other_activations != activations
    monkeypatch.setattr(runner, "library_versions", real)
    monkeypatch.setattr(runner, "source_digest", lambda *paths: "0" * 16)  # another release's code
    changed_audit, changed_activations, _ = keys(workspace, config)
    assert changed_audit != audit and changed_activations != activations
