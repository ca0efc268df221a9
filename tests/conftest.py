"""Shared fixtures: paths to the bundled data and the bundled model, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HH_FILE = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
LLAMAFACTORY_FILE = ROOT / "data" / "llamafactory-dpo-en-demo.jsonl"


@pytest.fixture(scope="session")
def hh_dataset():
    from spectrum_core.data import load_preferences

    return load_preferences(HH_FILE)


@pytest.fixture(scope="session")
def bundled_model():
    """SmolLM2-135M-Instruct, converted once into the model cache and loaded from there."""
    from spectrum_core.models import load_model

    return load_model("bundled", progress=lambda message: None)


@pytest.fixture(scope="session")
def small_audit_source(tmp_path_factory, bundled_model):
    """One small real audit (60 LLaMA-Factory pairs, bundled model), made once per test session."""
    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.workspace import Workspace

    root = tmp_path_factory.mktemp("small-audit")
    config = AuditConfig(max_pairs=60, max_prompt_tokens=96, max_response_tokens=96, sae_training_tokens=60_000)
    outcome = run_audit_in_workspace(Workspace(root), LLAMAFACTORY_FILE, config, log=lambda m: None)
    return root, outcome


def copy_small_audit(small_audit_source, folder):
    """A private copy of the small audit's workspace, so decisions made on it stay there."""
    import shutil

    from spectrum_core.workspace import Workspace

    source, outcome = small_audit_source
    root = folder / "ws"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("activations-*", ".staging"))
    return Workspace(root), outcome


@pytest.fixture
def small_audit(small_audit_source, tmp_path):
    return copy_small_audit(small_audit_source, tmp_path)


@pytest.fixture(scope="session")
def tiny_model(bundled_model, tmp_path_factory):
    """A randomly initialised 4-block Llama with the bundled tokenizer, in float32."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from spectrum_core.models import LoadedModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(bundled_model.tokenizer), hidden_size=64,
                         intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=2048)
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny-llama")
    return LoadedModel(model=model, tokenizer=bundled_model.tokenizer, spec="tiny-random",
                       path=folder, device="cpu", dtype=torch.float32)
