"""The Results page through AppTest, on the small audit with a short weighted-DPO run whose base and
tuned evaluations exist: comparison table, charts, concept prevalence, exports; a model not yet
evaluated gets the exact command and an Evaluate button that starts the job."""

from __future__ import annotations

import json

import pytest

from spectrum_core import jobs
from spectrum_core.metrics.prediction_report import PREDICTOR_ROWS


@pytest.fixture
def page(evaluated, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    workspace, outcome, tune_job = evaluated
    monkeypatch.setenv("SPECTRUM_WORKSPACE", str(workspace.root))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app_pages" / "results.py"), default_timeout=120)
    yield at, workspace, outcome, tune_job
    for job in workspace.jobs("eval"):
        jobs.stop_job(workspace, job.id, grace_seconds=2)


def test_base_and_tuned_side_by_side(page):
    at, workspace, outcome, tune_job = page
    at.run()
    assert not at.exception, at.exception
    # the settings of the newest evaluation (the fixture's tiny ones) are chosen by default
    assert at.radio[0].value.startswith("custom (eval job #")
    assert at.multiselect[0].value == [str(tune_job)]  # the newest runs are picked by default
    overview = at.dataframe[1].value
    assert list(overview.columns) == ["better", "what it measures", "base", f"run {tune_job} (dpo)"]
    assert "Polis JS" in overview.index and "win rate vs base" in overview.index
    assert overview.loc["Polis JS", "better"] == "lower is better"
    assert len(at.get("plotly_chart")) >= 8  # prevalence, steerability curve, metric bars, ...
    assert at.success or at.error  # the suppressed concept: stayed down, or flagged
    # the prediction tab: the run's agreement numbers, the scatter and the curve over checkpoints
    agreement = next(d.value for d in at.dataframe if "Spearman ρ" in d.value.columns)
    assert set(agreement["model"]) == {f"run {tune_job} (dpo)"} and agreement["concepts"].iloc[0] >= 1
    predictors = agreement["predictor"].tolist()
    assert predictors[:4] == [
        "the audit (SAE concepts)",
        "length alone",
        "bag of words",
        "the audit, length partialled out of both sides",
    ]
    # then a row per group of at least 3 concepts, each counting its own (at most all of them)
    groups = {name for path, name in PREDICTOR_ROWS if path[:1] == ("by_group",)}
    assert len(predictors) > 4 and set(predictors[4:]) <= groups
    assert (agreement["concepts"].iloc[4:] <= agreement["concepts"].iloc[0]).all()
    assert (agreement["CAFT"] == "off").all() and (agreement["control"] == "").all()
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Predicted by the audit vs realised" in t for t in titles)
    assert any("Suppressed concepts over training" in t for t in titles)
    # concepts as shares of generations and changes from the base, not signed mean activations
    prevalence = next(json.loads(t) for t in titles if "Share of generations where it is present" in t)
    assert {trace["xaxis"] for trace in prevalence["data"]} == {"x", "x2"}
    assert not any("mean activation" in t for t in titles)
    # steerability: the loss and the calibration error each in a panel of its own, both models in each
    steer = next(json.loads(t) for t in titles if "token calibration error" in t and "annotations" in t)
    names = [a["text"] for a in steer["layout"]["annotations"]]
    assert [n.split("<br>")[0] for n in names] == ["steerability loss ≥ 1", "token calibration error"]
    assert [(t["xaxis"], t["name"]) for t in steer["data"]] == [
        (axis, name) for axis in ("x", "x2") for name in ("base", f"run {tune_job} (dpo)")
    ]
    over_training = [m.value for m in [*at.success, *at.error] if "held down" in m.value or "came back" in m.value]
    assert len(over_training) == 1
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Report (HTML)", "Report (JSON)"]


def test_unevaluated_models_get_a_command_and_a_button(page):
    at, workspace, outcome, tune_job = page
    at.run()
    at.radio[0].set_value("gpu").run()  # the gpu preset has not been evaluated
    assert not at.exception, at.exception
    assert "not evaluated yet" in str(at.dataframe[0].value)
    command = at.code[0].value
    assert command.startswith("spectrum eval --run base --run") and "--preset gpu" in command
    assert at.button[0].label.startswith("Evaluate 2 model")
    at.button[0].click().run()
    assert not at.exception, at.exception
    job = workspace.jobs("eval")[0]
    assert job.status in jobs.ACTIVE and job.config["runs"] == ["base", str(tune_job)]
    log = (workspace.root / job.log_path).read_text()
    assert "eval --run base --run" in log and "--preset gpu" in log
    assert f"{workspace.job_title(job.id)}: " in " ".join(m.value for m in at.markdown)
    jobs.stop_job(workspace, job.id, grace_seconds=2)
    at.run()
    assert "Resume" in [b.label for b in at.button]  # a stopped evaluation can be started again
