"""Shared fixtures: paths to the bundled data and the bundled model, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HH_FILE = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
LLAMAFACTORY_FILE = ROOT / "data" / "llamafactory-dpo-en-demo.jsonl"


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Put ``sys.modules["__main__"]`` back after every test. Streamlit's AppTest runs a page as
    ``__main__`` and leaves it there; a process started later by multiprocessing (spawn or
    forkserver) then re-runs that page as its main module and dies with exit code 1 (what CI saw
    in the workspace tests, which run after the app tests)."""
    import sys

    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def hh_dataset():
    from spectrum_core.data import load_preferences

    return load_preferences(HH_FILE)


@pytest.fixture(scope="session")
def bundled_model():
    """SmolLM2-135M-Instruct, converted once into the model cache and loaded from there."""
    from spectrum_core.models import load_model

    return load_model("bundled")


@pytest.fixture(scope="session")
def small_audit_source(tmp_path_factory, bundled_model):
    """One small real audit (60 LLaMA-Factory pairs, bundled model), made once per test session."""
    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.workspace import Workspace

    root = tmp_path_factory.mktemp("small-audit")
    config = AuditConfig(
        max_pairs=60, max_prompt_tokens=96, max_response_tokens=96, sae_training_tokens=60_000, null_runs=3
    )
    outcome = run_audit_in_workspace(Workspace(root), LLAMAFACTORY_FILE, config)
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
    config = LlamaConfig(
        vocab_size=len(bundled_model.tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny-llama")
    return LoadedModel(
        model=model,
        tokenizer=bundled_model.tokenizer,
        spec="tiny-random",
        path=folder,
        device="cpu",
        dtype=torch.float32,
    )


def save_suppress_top_plan(workspace, outcome):
    """Suppress the audit's top directed token concept and save the plan (the saved plan)."""
    import pandas as pd

    from spectrum_core.audit.review import AuditView
    from spectrum_core.interventions import compile_plan, save_plan, shape_pairs

    view = AuditView.load(workspace.find_artifact(outcome.artifact_key))
    target = view.concepts[(view.concepts["mode"] == "token") & (view.concepts["direction"] != "none")]
    workspace.decide(outcome.job_id, target.sort_values("rank")["concept_id"].iloc[0], "suppress", user="ana")
    plan = compile_plan(workspace, outcome.job_id, view)
    dataset = workspace.load_dataset(workspace.job(outcome.job_id).dataset_id)
    shaped = shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
    return save_plan(workspace, plan, shaped, dataset)


# Evaluation settings small enough for tests: every section runs, on a handful of items.
TINY_EVAL = dict(
    steer_families="coin,polis",
    steer_tasks_per_family=1,
    steer_samples=4,
    coverage_prompts=1,
    coverage_samples=8,
    polis_statements=2,
    ambient_items=2,
    prevalence_prompts=6,
    prevalence_max_new_tokens=12,
    preference_pairs=4,
    reward_pairs=30,
    grounded_questions=2,
    constraint_prompts=2,
    answer_max_new_tokens=12,
)


@pytest.fixture(scope="session")
def evaluated_source(small_audit_source, tmp_path_factory):
    """The small audit with a suppressed concept, a 2-step weighted-DPO run on its plan, and the
    base and tuned evaluations (tiny settings); made once per test session, copied per test."""
    from spectrum_core.metrics.config import EvalConfig
    from spectrum_core.metrics.evaluate import run_evaluation
    from spectrum_core.tuning.config import DPORunConfig
    from spectrum_core.tuning.runs import run_tuning

    workspace, outcome = copy_small_audit(small_audit_source, tmp_path_factory.mktemp("evaluated"))
    saved = save_suppress_top_plan(workspace, outcome)
    # a checkpoint at step 1 gives the suppressed concept a curve over steps (step 1, then final)
    run_tuning(workspace, DPORunConfig(plan_id=saved.plan_id, max_steps=2, batch_size=2, max_length=384, save_steps=1))
    tune_job = workspace.jobs("tune")[0].id
    config = EvalConfig(**TINY_EVAL)
    base = run_evaluation(workspace, "base", config, audit_job_id=outcome.job_id)
    tuned = run_evaluation(workspace, tune_job, config)
    return workspace.root, outcome, tune_job, base, tuned


@pytest.fixture
def evaluated(evaluated_source, tmp_path):
    """A private copy of the evaluated workspace: (workspace, audit outcome, tune job id)."""
    import shutil

    from spectrum_core.workspace import Workspace

    source, outcome, tune_job, _, _ = evaluated_source
    root = tmp_path / "ws"
    shutil.copytree(source, root, ignore=shutil.ignore_patterns("activations-*", ".staging"))
    return Workspace(root), outcome, tune_job


# `make test-fast` runs what is not marked slow. A test is slow when it needs a whole audit, a
# tuning run or an evaluation (the session fixtures below), drives the app or a browser, or runs a
# benchmark script; SLOW_FILES are files whose every test does one of these in its own body.
SLOW_FIXTURES = {"small_audit_source", "evaluated_source", "planted_audit", "sampled_audit"}
SLOW_FILES = {
    "tests/e2e/test_browser.py",
    "tests/test_bench_methods.py",
    "tests/test_bench_scripts.py",
    "tests/tuning/test_runs.py",
    "tests/metrics/test_closed_loop.py",
}
# Single tests that each run a whole audit, job process or app session in their body (15 s to 80 s
# each, measured with `pytest -m "not slow" --durations=40`).
SLOW_TESTS = {
    "tests/audit/test_reproducibility.py::test_one_thread_and_two_threads_give_the_same_families",
    "tests/app/test_audit_page.py::test_start_watch_and_reuse",
    "tests/audit/test_pipeline.py::test_two_processes_through_accelerate",
    "tests/audit/labelling/test_labels.py::test_an_audit_with_a_local_labeller_and_with_one_that_cannot_load",
    "tests/test_jobs.py::test_job_runs_to_the_end_and_reports",
    "tests/test_jobs.py::test_stop_ends_the_process_tree_and_resume_continues",
    "tests/test_cli.py::test_audit_command_runs_then_reuses",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).relative_to(ROOT).as_posix()
        slow_test = f"{path}::{item.name}" in SLOW_TESTS
        if slow_test or path in SLOW_FILES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
