"""Spectrum task families built from the bundled data: Polis votes on a statement, AmbiEnt's nine
annotators' NLI labels, the diffuse-distribution prompts, synthetic coin flips, urns and
categorical draws, and the plan's shaped chosen responses ("chat"). Whole families can be held out
for evaluation, and the bundled families draw from the fixed evaluation quarter of their items
only with ``split="eval"`` (see ``eval_split``).
"""

from __future__ import annotations

import gzip
import json
import random
import string
from collections.abc import Mapping

from ..bundled import AMBIENT_LABELS, DIFFUSE_PROMPTS, POLIS_VOTES, bundled_file
from .eval_split import in_split
from .spectrum_format import SpectrumTask

FAMILIES = ("polis", "ambient", "diffuse", "coin", "urn", "categorical", "chat")


def _normalised(counts: Mapping[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def polis_rows(split: str = "train") -> list[dict]:
    # The bundled subset: statements with a vote distribution and at least 10 votes.
    with gzip.open(bundled_file(POLIS_VOTES), "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [r for r in rows if in_split(f"polis:{r['conversation']}:{r['comment_id']}", split)]


def polis_description(row: dict) -> str:
    return (
        f"Votes of participants in a Polis deliberation about “{row['topic']}” on the statement: "
        f"“{row['comment']}”. Each vote is agree, disagree or pass."
    )


def ambient_rows(split: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in open(bundled_file(AMBIENT_LABELS), encoding="utf-8")]
    return [r for r in rows if r.get("q0_label_counts") and in_split(f"ambient:{r['id']}", split)]


def ambient_description(row: dict) -> str:
    return (
        "Annotators' labels for whether the premise entails the hypothesis (entailment, neutral or "
        f"contradiction).\nPremise: {row['premise']}\nHypothesis: {row['hypothesis']}"
    )


def diffuse_rows(split: str = "train") -> list[tuple[str, list[str]]]:
    """(request, valid outputs) of the diffuse-distribution prompts that list a valid set."""
    rows = []
    for line in open(bundled_file(DIFFUSE_PROMPTS), encoding="utf-8"):
        row = json.loads(line)
        targets = json.loads(row["targets"]) if isinstance(row["targets"], str) else row["targets"]
        # open-ended prompts (e.g. fictitious biographies) list no valid set to sample from
        if targets and in_split(f"diffuse:{row['request']}", split):
            rows.append((row["request"], targets))
    return rows


def _draw(rng: random.Random, dist: Mapping[str, float], n: int) -> list[str]:
    names = [k for k, v in dist.items() if v > 0]
    return rng.choices(names, weights=[dist[k] for k in names], k=n)


def polis_tasks(rng: random.Random, n_tasks: int, n_samples: int, split: str = "train") -> list[SpectrumTask]:
    rows = polis_rows(split)
    return [
        SpectrumTask(
            "polis", polis_description(row), [(None, v) for v in _draw(rng, row["dist"], n_samples)], dict(row["dist"])
        )
        for row in rng.sample(rows, min(n_tasks, len(rows)))
    ]


def ambient_tasks(rng: random.Random, n_tasks: int, n_samples: int, split: str = "train") -> list[SpectrumTask]:
    rows = ambient_rows(split)
    tasks = []
    for row in rng.sample(rows, min(n_tasks, len(rows))):
        counts = {k: float(v) for k, v in row["q0_label_counts"].items()}
        tasks.append(
            SpectrumTask(
                "ambient",
                ambient_description(row),
                [(None, v) for v in _draw(rng, counts, n_samples)],
                _normalised(counts),
            )
        )
    return tasks


def diffuse_tasks(rng: random.Random, n_tasks: int, n_samples: int, split: str = "train") -> list[SpectrumTask]:
    rows = diffuse_rows(split)
    tasks = []
    for _ in range(n_tasks):
        request, targets = rng.choice(rows)
        tasks.append(
            SpectrumTask(
                "diffuse",
                request,
                [(None, rng.choice(targets)) for _ in range(n_samples)],
                {t: 1 / len(targets) for t in targets},
            )
        )
    return tasks


def coin_tasks(rng: random.Random, n_tasks: int, n_samples: int, split: str = "train") -> list[SpectrumTask]:
    # Synthetic families draw fresh distributions: the split only changes the seed stream.
    tasks = []
    for i in range(n_tasks):
        p = rng.random()
        flips = ["heads" if rng.random() < p else "tails" for _ in range(n_samples)]
        described = i % 2 == 0  # half say the bias, half leave it to be inferred from the flips
        description = f"Flips of a coin that lands heads with probability {p:.2f}." if described else None
        tasks.append(SpectrumTask("coin", description, [(None, f) for f in flips], {"heads": p, "tails": 1 - p}))
    return tasks


def urn_tasks(rng: random.Random, n_tasks: int, n_samples: int, split: str = "train") -> list[SpectrumTask]:
    colours = ["red", "blue", "green", "yellow", "black", "white"]
    tasks = []
    for _ in range(n_tasks):
        chosen = rng.sample(colours, rng.randint(2, 4))
        counts = {c: rng.randint(1, 9) for c in chosen}
        description = (
            "Balls drawn with replacement from an urn holding "
            + ", ".join(f"{n} {c}" for c, n in counts.items())
            + " balls."
        )
        tasks.append(
            SpectrumTask("urn", description, [(None, d) for d in _draw(rng, counts, n_samples)], _normalised(counts))
        )
    return tasks


def categorical_tasks(rng: random.Random, n_tasks: int, n_samples: int, split: str = "train") -> list[SpectrumTask]:
    tasks = []
    for _ in range(n_tasks):
        labels = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 6))) for _ in range(rng.randint(2, 5))]
        weights = [rng.gammavariate(1.0, 1.0) for _ in labels]
        dist = dict(zip(labels, weights))
        tasks.append(
            SpectrumTask("categorical", None, [(None, d) for d in _draw(rng, dist, n_samples)], _normalised(dist))
        )
    return tasks


def chat_tasks(records: list[dict], rng: random.Random, n_tasks: int) -> list[SpectrumTask]:
    """The plan's shaped chosen responses, drawn in proportion to their weights: the prompt's turns
    before the last user turn are the description, the last user turn the input."""
    usable = [r for r in records if r.get("weight", 1.0) > 0]
    if not usable:
        return []
    picked = rng.choices(usable, weights=[r.get("weight", 1.0) for r in usable], k=min(n_tasks, len(usable)))
    tasks = []
    for record in picked:
        turns = list(record["prompt"])
        last = turns[-1]["content"] if turns else ""
        context = "\n".join(f"{m['role']}: {m['content']}" for m in turns[:-1]) or None
        tasks.append(SpectrumTask("chat", context, [(last, record["chosen"][0]["content"])]))
    return tasks


BUILDERS = {
    "polis": polis_tasks,
    "ambient": ambient_tasks,
    "diffuse": diffuse_tasks,
    "coin": coin_tasks,
    "urn": urn_tasks,
    "categorical": categorical_tasks,
}


def build_mixture(
    families: tuple[str, ...],
    tasks_per_family: int,
    samples_per_task: int,
    seed: int,
    chat_records: list[dict] | None = None,
    split: str = "train",
) -> list[SpectrumTask]:
    rng = random.Random(seed if split == "train" else f"{split}:{seed}")
    tasks: list[SpectrumTask] = []
    for family in families:
        if family == "chat":
            tasks += chat_tasks(chat_records or [], rng, tasks_per_family)
        elif family in BUILDERS:
            tasks += BUILDERS[family](rng, tasks_per_family, samples_per_task, split)
        else:
            raise ValueError(f"unknown Spectrum task family {family!r}; known: {', '.join(FAMILIES)}")
    rng.shuffle(tasks)
    return tasks
