"""Progress files: the follower a polling page uses reads each byte once and misses nothing."""

from __future__ import annotations

from spectrum_core.progress import ProgressFollower, ProgressLog, read_progress


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
