"""A tuning run's whole-job time left, from a progress log recorded with a controlled clock: the
measured seconds per step times the steps left, per round for ReSet, and no figure before there
is anything measured to make one from."""

from __future__ import annotations

import pytest

from spectrum_core.progress import ProgressLog, StepsReport, read_progress
from spectrum_core.tuning.timing import ROUND_STAGE, tuning_estimate


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    """(log, clock): a progress log whose ``time.time`` is ``clock[0]``."""
    clock = [1000.0]
    monkeypatch.setattr("spectrum_core.progress.time.time", lambda: clock[0])
    path = tmp_path / "progress.jsonl"
    return ProgressLog(path, interval=0), clock, lambda: read_progress(path)


def prepare(log, clock, seconds: float) -> None:
    with StepsReport(log, "prepare", ["loading the model", "tokenizing pairs"], heartbeat=0) as steps:
        steps.begin("loading the model")
        clock[0] += seconds
        steps.finish()


def train(log, clock, first: int, last: int, total: int, per_step: float) -> None:
    log("train", first, total, unit="steps", started_at_step=first)
    for step in range(first + 1, last + 1):
        clock[0] += per_step
        log("train", step, total, unit="steps")


def test_no_figure_before_training_has_measured_its_steps(recorder):
    log, clock, records = recorder
    prepare(log, clock, 90)  # the model's load and the tokenization: no training rate yet
    estimate = tuning_estimate(records())
    assert estimate.seconds is None and "not been measured" in estimate.basis
    train(log, clock, 0, 1, 30, 4.0)  # one step carries the start-up: not enough
    assert tuning_estimate(records()).seconds is None


def test_measured_seconds_per_step_times_the_steps_left(recorder):
    log, clock, records = recorder
    prepare(log, clock, 90)
    train(log, clock, 0, 10, 30, 4.0)
    estimate = tuning_estimate(records())
    assert estimate.seconds == pytest.approx(80.0)  # 4 s per step x 20 steps left
    assert "4.0 s per step" in estimate.basis and "20 steps left" in estimate.basis


def test_a_resumed_run_measures_only_its_own_steps(recorder):
    log, clock, records = recorder
    train(log, clock, 0, 10, 30, 1.0)  # the first attempt, on a faster machine or killed mid-way
    clock[0] += 600
    prepare(log, clock, 30)
    train(log, clock, 10, 14, 30, 5.0)  # resumed from the checkpoint at step 10
    assert tuning_estimate(records()).seconds == pytest.approx(5.0 * 16)


def reset_round(log, clock, number: int, sampling: float, steps: int, per_step: float, total: int) -> None:
    with StepsReport(log, ROUND_STAGE.format(number), ["sampling candidates"], heartbeat=0) as report:
        report.begin("sampling candidates")
        clock[0] += sampling
        report.finish()
    train(log, clock, 0, steps, total, per_step)


def test_reset_adds_the_rounds_still_to_come(recorder):
    log, clock, records = recorder
    prepare(log, clock, 20)
    reset_round(log, clock, 1, sampling=20, steps=5, per_step=2.0, total=10)
    # round 1: 20 s sampling + 10 steps x 2 s = 40 s a round; 5 steps left now, then 2 more rounds
    estimate = tuning_estimate(records(), rounds=3)
    assert estimate.seconds == pytest.approx(2.0 * 5 + 40 * 2)
    assert "2 round(s) after this one" in estimate.basis
    clock[0] += 10  # round 1's last 5 steps
    reset_round(log, clock, 2, sampling=30, steps=0, per_step=2.0, total=10)
    # round 1 took 40 s from its start to round 2's; round 2 has spent 30 of its 40 and trained nothing yet
    estimate = tuning_estimate(records(), rounds=3)
    assert estimate.seconds == pytest.approx(40 - 30 + 40)
    assert "1 finished round" in estimate.basis


def test_reset_before_its_first_training_steps_has_no_figure(recorder):
    log, clock, records = recorder
    prepare(log, clock, 20)
    with StepsReport(log, ROUND_STAGE.format(1), ["sampling candidates"], heartbeat=0) as report:
        report.begin("sampling candidates")
    assert tuning_estimate(records(), rounds=2).seconds is None
