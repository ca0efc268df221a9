"""How long a tuning run has left as a whole, from what this run has measured on this machine.

Light on purpose (no torch, no transformers): the app reads it every time it polls a job. The stage
names the trainers report under live here, so the estimate and the trainers cannot drift apart.
"""

from __future__ import annotations

from ..progress import JobEstimate

TRAIN_STAGE = "train"
PREPARE_STAGE = "prepare"
ROUND_STAGE = "round {}"  # ReSet: each round's work before its training, numbered from 1
# Steps measured before their rate is trusted: the first step also carries the data loader's and
# optimizer's start, so a rate from one step alone overstates the time left.
MIN_MEASURED_STEPS = 2
NOT_YET = "this run's first training steps have not been measured yet"


def _latest_training(records: list[dict]) -> list[dict]:
    """The train records since training last started (a resume or a ReSet round starts it again)."""
    starts = [i for i, r in enumerate(records) if r.get("stage") == TRAIN_STAGE and "started_at_step" in r]
    if not starts:
        return []
    return [r for r in records[starts[-1] :] if r.get("stage") == TRAIN_STAGE]


def seconds_per_step(records: list[dict]) -> tuple[float, int] | None:
    """This run's measured seconds per optimizer step, and over how many steps (None: too few yet)."""
    training = _latest_training(records)
    if not training:
        return None
    first, last = training[0], training[-1]
    steps = last["done"] - first["done"]
    if steps < MIN_MEASURED_STEPS:
        return None
    return (last["t"] - first["t"]) / steps, steps


def tuning_estimate(records: list[dict], rounds: int = 1) -> JobEstimate:
    """Time left for the whole run: the measured seconds per step × the steps left, and for ReSet
    the rounds after this one at the measured time per round. The final save is not counted (it
    takes seconds); checkpoint saves are, inside the measured rate."""
    rate = seconds_per_step(records)
    if rounds > 1:
        return _reset_estimate(records, rounds, rate)
    if rate is None:
        return JobEstimate(None, NOT_YET)
    per_step, measured = rate
    last = _latest_training(records)[-1]
    left = last["total"] - last["done"]
    return JobEstimate(
        per_step * left, f"{per_step:.1f} s per step over this run's last {measured} steps here × {left} steps left"
    )


def _round_starts(records: list[dict], rounds: int) -> dict[int, float]:
    """When each ReSet round (1-based) began in the latest attempt of the run."""
    prepared = [i for i, r in enumerate(records) if r.get("stage") == PREPARE_STAGE]
    latest = records[prepared[-1] :] if prepared else records
    starts: dict[int, float] = {}
    for number in range(1, rounds + 1):
        found = [r["t"] for r in latest if r.get("stage") == ROUND_STAGE.format(number)]
        if found:
            starts[number] = min(found)
    return starts


def _reset_estimate(records: list[dict], rounds: int, rate: tuple[float, int] | None) -> JobEstimate:
    """The current round's time left (from its training's rate, or the measured time per round),
    plus the rounds after it at the time per round measured in this run."""
    starts = _round_starts(records, rounds)
    if not starts:
        return JobEstimate(None, NOT_YET)
    current, now = max(starts), records[-1]["t"]
    finished = [starts[n + 1] - starts[n] for n in starts if n + 1 in starts]
    training = _latest_training(records)
    training_now = rate is not None and training[0]["t"] >= starts[current]
    if finished:
        per_round = sum(finished) / len(finished)
        basis = f"{per_round:.0f} s per round over this run's {len(finished)} finished round(s)"
    elif training_now and rate is not None:
        per_round = training[0]["t"] - starts[current] + rate[0] * training[-1]["total"]
        basis = f"round {current}'s sampling time and {rate[0]:.1f} s per training step, measured here"
    else:
        return JobEstimate(None, f"round {current}'s sampling and first training steps have not been measured yet")
    if training_now and rate is not None:
        this_round = rate[0] * (training[-1]["total"] - training[-1]["done"])
    else:
        this_round = max(0.0, per_round - (now - starts[current]))
    return JobEstimate(
        this_round + per_round * (rounds - current), f"{basis}; {rounds - current} round(s) after this one"
    )
