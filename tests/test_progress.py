"""Progress files: the follower a polling page uses reads each byte once and misses nothing."""

from __future__ import annotations

import time

from spectrum_core.progress import ProgressFollower, ProgressLog, StepsReport, labelled, read_progress


def test_the_follower_reads_only_what_was_added_and_waits_for_half_lines(tmp_path):
    path = tmp_path / "progress.jsonl"
    follower = ProgressFollower(path)
    assert follower.update() == [] and follower.records == []  # no file yet
    log = ProgressLog(path, interval=0)
    log("activations", 1, 4)
    log("activations", 2, 4)
    assert [r["done"] for r in follower.update()] == [1, 2]
    assert follower.update() == []  # nothing new: nothing read
    with open(path, "a") as handle:  # the writer is mid-append: half a line
        handle.write('{"stage": "sae", "done": 1, "tot')
    assert follower.update() == []  # not read until it is whole
    with open(path, "a") as handle:
        handle.write('al": 2}\n')
    assert follower.update() == [{"stage": "sae", "done": 1, "total": 2}]
    log("activations", 3, 4)
    follower.update()
    assert follower.stages["sae"]["done"] == 1 and follower.stages["activations"]["done"] == 3
    assert follower.records == read_progress(path)  # what a full read gives, read once


def test_the_follower_starts_again_when_the_file_is_replaced_or_shrinks(tmp_path):
    path = tmp_path / "progress.jsonl"
    ProgressLog(path, interval=0)("train", 1, 10)
    follower = ProgressFollower(path)
    follower.update()
    path.unlink()
    ProgressLog(path, interval=0)("eval", 5, 5)  # a new file (a rerun from scratch)
    follower.update()
    assert [r["stage"] for r in follower.records] == ["eval"] and list(follower.stages) == ["eval"]
    path.write_text("")
    follower.update()
    assert follower.records == [] and follower.stages == {}


class Clock:
    """A settable ``time.time`` for the progress log."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_resumed_stage_takes_its_rate_from_this_process_only(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("spectrum_core.progress.time.time", clock)
    path = tmp_path / "progress.jsonl"
    log = ProgressLog(path, interval=0)
    log("train", 50, 100)  # resumed at step 50: the 50 steps before were another process's
    clock.now += 10
    log("train", 52, 100)
    record = read_progress(path)[-1]
    assert record["elapsed"] == 10 and record["eta"] == 240  # 5 s per step x 48 steps, not 10/52 x 48
    clock.now += 4
    log("train", 0, 100)  # a new round's training: the stage starts again
    clock.now += 6
    log("train", 3, 100)
    assert read_progress(path)[-1]["elapsed"] == 6 and read_progress(path)[-1]["eta"] == 194


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_steps_report_names_the_step_and_beats_while_a_step_cannot_count():
    records = []
    with StepsReport(lambda *a, **k: records.append((a, k)), "prepare", ["loading", "tokenizing"], 0.05) as steps:
        steps.begin("loading")
        # an opaque step (loading a model): only the heartbeat speaks, with the time so far
        wait_until(lambda: sum(k["step"] == "loading" for _, k in records) >= 3)
        beats = [k["step_elapsed"] for _, k in records if k["step"] == "loading"]
        assert beats[-1] > beats[0] and all(a == ("prepare", 0, 2) for a, _ in records)
        steps.count(5, 10, "pairs", step="tokenizing")  # switches step; the count follows with the beat
        wait_until(lambda: "step_done" in records[-1][1])
        (stage, done, total), info = records[-1]
        assert (stage, done, total) == ("prepare", 1, 2) and info["eta"] is None
        assert (info["step"], info["step_done"], info["step_total"], info["step_unit"]) == (
            "tokenizing",
            5,
            10,
            "pairs",
        )
        steps.finish()
        after = len(records)
        time.sleep(0.2)
    assert len(records) == after  # finished: the heartbeat has stopped
    assert records[-1][0] == ("prepare", 2, 2) and "step" not in records[-1][1]


def test_labelled_progress_names_its_model():
    records = []
    labelled(lambda *a, **k: records.append((a, k)), "run 5 (dpo)")("coverage", 1, 2, unit="prompts")
    assert records == [(("run 5 (dpo): coverage", 1, 2), {"unit": "prompts", "model": "run 5 (dpo)"})]
