"""Evaluations of the bundled model and of a short weighted-DPO run on the real small audit:
every section reported, the tuned run compared with the base on the same prompts, results
cached by model and settings, the command line."""

from __future__ import annotations

import json
import math

import pandas as pd

from spectrum_core.cli import main
from spectrum_core.metrics.config import EvalConfig
from spectrum_core.metrics.evaluate import eval_key, run_evaluation
from spectrum_core.metrics.figures import all_figures
from spectrum_core.metrics.report import (
    METRIC_GUIDE,
    comparison_table,
    export_html,
    export_json,
    headline,
    load_report,
    readable_table,
)
from spectrum_core.metrics.results import gather
from spectrum_core.metrics.targets import resolve_target
from spectrum_core.reward.shaped import load_audit_saes
from tests.conftest import TINY_EVAL


def test_base_report_has_every_section(evaluated_source):
    _, outcome, _, base, _ = evaluated_source
    report = load_report(base)
    assert report["target"] == "base" and report["audit_job_id"] == outcome.job_id
    steer = report["steerability"]
    assert math.isfinite(steer["loss_ge1"]) and steer["loss_ge1"] > steer["ideal_loss_ge1"] > 0
    assert 0 <= steer["calibration_error"] <= 1 and [r["i"] for r in steer["curve"]] == [0, 1, 2, 3]
    coverage = pd.read_parquet(base / "coverage.parquet")
    assert len(coverage) == 1 and len(coverage["samples"].iloc[0]) == 8
    assert 0 <= report["coverage"]["embedding_diversity"] <= 2 and "distinct_2" in coverage
    assert set(report["alignment"]) == {"polis", "ambient"}
    assert 0 <= report["alignment"]["ambient"]["js"] <= 1
    assert report["faithfulness"][0]["checkpoint"] == "base"
    assert report["faithfulness"][0]["grounded_questions"] == 2
    assert set(report["diversity"]) == {"distinct_1", "distinct_2", "embedding_diversity"}
    generations = pd.read_parquet(base / "generations" / "generations.parquet")
    assert len(generations) == 6 and generations["response"].str.len().gt(0).all()
    assert report["prevalence"]["compared"] is False and report.get("reward") is None
    assert set(report["runtime_seconds"]) >= {"steerability", "coverage", "alignment", "generations"}


def test_tuned_report_compares_with_the_base_on_the_same_prompts(evaluated_source):
    root, outcome, tune_job, base, tuned = evaluated_source
    report = load_report(tuned)
    assert report["tune_job_id"] == tune_job and report["method"] == "dpo" and report["plan_id"] is not None
    assert report["run_config"]["max_steps"] == 2
    assert report["preference"]["pairs"] == 4 and 0 <= report["preference"]["accuracy"] <= 1
    assert 0 <= report["reward"]["win_rate"] <= 1 and report["reward"]["prompts"] == 6
    table = pd.read_parquet(tuned / "prevalence.parquet")
    assert table["action"].tolist() == ["suppress"] and {"base_rate", "tuned_rate", "difference_low", "flagged"} <= set(
        table
    )
    base_prompts = pd.read_parquet(base / "generations" / "generations.parquet")["prompt"].map(repr)
    tuned_prompts = pd.read_parquet(tuned / "generations" / "generations.parquet")["prompt"].map(repr)
    assert base_prompts.tolist() == tuned_prompts.tolist()


def test_same_evaluation_is_reused_and_different_settings_are_not(evaluated):
    workspace, outcome, tune_job = evaluated
    config = EvalConfig(**TINY_EVAL)
    first = run_evaluation(workspace, tune_job, config)
    assert run_evaluation(workspace, tune_job, config) == first
    assert workspace.jobs("eval")[0].status == "succeeded"
    base = run_evaluation(workspace, "base", config, audit_job_id=outcome.job_id)
    # batch size changes speed, not results: the same evaluation
    assert (
        run_evaluation(workspace, "base", EvalConfig(**{**TINY_EVAL, "batch_size": 3}), audit_job_id=outcome.job_id)
        == base
    )
    other = EvalConfig(**{**TINY_EVAL, "coverage_samples": 9})
    target = resolve_target(workspace, "base", outcome.job_id)
    assert eval_key(workspace, target, other)[0] != base.name


def test_comparison_and_exports_carry_the_identifiers(evaluated):
    workspace, outcome, tune_job = evaluated
    saes = load_audit_saes(workspace.find_artifact(outcome.artifact_key))
    comparison = gather(workspace, [str(tune_job)], EvalConfig(**TINY_EVAL), outcome.job_id, saes)
    assert not comparison.missing and [r["target"] for r in comparison.reports] == ["base", f"run {tune_job} (dpo)"]
    table = comparison_table(comparison.reports)
    assert "win rate vs base" in table.index and list(table.columns) == ["base", f"run {tune_job} (dpo)"]
    readable = readable_table(comparison.reports)
    assert list(readable.columns) == ["better", "what it measures", "base", f"run {tune_job} (dpo)"]
    assert readable.loc["win rate vs base", "better"] == "higher is better"
    assert readable.loc["Polis JS", "better"] == "lower is better" if "Polis JS" in readable.index else True
    prevalence = comparison.prevalence[f"run {tune_job} (dpo)"]
    exported = json.loads(export_json(comparison.reports, prevalence))
    assert exported["reports"][1]["plan_hash"] and exported["reports"][1]["audit_job_id"] == outcome.job_id
    page = export_html(comparison.reports, all_figures(comparison.reports, comparison.prevalence), prevalence)
    assert page.count("<h2>") >= 10 and "plotly" in page and exported["reports"][1]["tune_artifact"] in page


def test_eval_command_line(evaluated, capsys):
    workspace, outcome, tune_job = evaluated
    settings = [a for k, v in TINY_EVAL.items() for a in ("--set", f"{k}={v}")]
    code = main(
        [
            "--workspace",
            str(workspace.root),
            "eval",
            "--run",
            str(tune_job),
            "--run",
            "base",
            "--audit",
            str(outcome.job_id),
            *settings,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.index("Evaluation of base") < out.index(f"Evaluation of run {tune_job}")  # base first
    assert "win rate vs base" in out and "runtime:" in out
    assert main(["--workspace", str(workspace.root), "eval", "--run", "999"]) == 2
    assert "no tuning job" in capsys.readouterr().err
    assert main(["--workspace", str(workspace.root), "eval", "--set", "steer_families=dice"]) == 2


def test_reset_run_gets_one_faithfulness_point_per_checkpoint(evaluated):
    from spectrum_core.tuning.config import ReSetRunConfig
    from spectrum_core.tuning.runs import run_tuning

    workspace, outcome, _ = evaluated
    plan_id = workspace.plans(outcome.job_id)[0]["id"]
    run_tuning(
        workspace,
        ReSetRunConfig(
            plan_id=plan_id,
            max_steps=2,
            batch_size=2,
            max_length=384,
            save_steps=1,
            preference_prompts=2,
            context_prompts=2,
            constraint_prompts=2,
            candidates_per_temperature=1,
            max_new_tokens=16,
            reward_pairs=30,
            threshold=-100.0,
        ),
    )
    reset_job = workspace.jobs("tune")[0].id
    report = load_report(run_evaluation(workspace, reset_job, EvalConfig(**TINY_EVAL)))
    points = report["faithfulness"]
    assert [p["checkpoint"] for p in points] == ["round 1 step 1", "round 1 step 2", "final"]
    assert all(0 <= p["faithfulness"] <= 1 and 0 <= p["constraints_satisfied"] <= 1 for p in points)
    # the final adapter is the last checkpoint's: same greedy answers, same point
    assert points[1]["faithfulness"] == points[2]["faithfulness"]
    assert report["reward"]["reward"] == "the run's reward" and report["preference"] is None


def test_a_run_requested_twice_is_listed_once(evaluated):
    import yaml

    from spectrum_core.metrics.results import tuning_runs
    from spectrum_core.tuning.config import config_from_dict
    from spectrum_core.tuning.runs import run_tuning

    workspace, outcome, tune_job = evaluated
    folder = workspace.find_artifact(workspace.job(tune_job).artifact_key)
    run_tuning(workspace, config_from_dict(yaml.safe_load((folder / "config.yaml").read_text())))  # reused
    assert len(workspace.jobs("tune")) == 2
    assert [j.id for j in tuning_runs(workspace, outcome.job_id)] == [tune_job]


def test_every_headline_metric_says_which_way_is_better():
    """The overview shows each metric's direction of better and a line on what it measures."""
    names = [name for name in headline({}) if name != "model"]
    assert sorted(names) == sorted(METRIC_GUIDE)
    for better, meaning in METRIC_GUIDE.values():
        assert better in ("higher", "lower", "") and len(meaning.split()) >= 4


def test_every_progress_record_of_a_several_model_job_names_its_model(tmp_path, monkeypatch):
    """One job evaluates the base and a tuned run (and a tuned run alone first makes the base's
    evaluation): each record says which model it is about, as the stage's prefix and ``model``.
    The models are stand-ins that report as the sections do; what is checked is the labelling."""
    from spectrum_core.metrics import evaluate
    from spectrum_core.metrics.targets import BASE, EvalTarget
    from spectrum_core.progress import read_progress
    from spectrum_core.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    audit = workspace.create_job("audit", {"test": "audit"})

    def target(workspace, run, audit_job_id=None, model=None):
        if str(run) == BASE:
            return EvalTarget(model="bundled", audit_job_id=audit)
        return EvalTarget("bundled", audit, tune_job_id=int(run), tune_artifact=f"tune-{run}", run={"method": "dpo"})

    def sections(workspace, target, config, staging, base_folder, progress):
        for done in range(3):
            progress("generations", done, 2, unit="responses")
        return {"target": target.name}

    monkeypatch.setattr(evaluate, "resolve_target", target)
    monkeypatch.setattr(evaluate, "evaluate_model", sections)
    # The second job has other settings, so its base evaluation is made inside the tuned one's.
    jobs = ((["base", "5"], EvalConfig(**TINY_EVAL)), (["6"], EvalConfig(**{**TINY_EVAL, "coverage_prompts": 2})))
    for runs, config in jobs:
        job_id = workspace.create_job("eval", {"runs": runs})
        evaluate.evaluate_runs(workspace, runs, config, audit, job_id)
        records = read_progress(workspace.root / workspace.job(job_id).progress_path)
        assert {r["model"] for r in records} == {"base", f"run {runs[-1]} (dpo)"}
        assert all(r["stage"] == f"{r['model']}: generations" for r in records)
