"""Spectrum Tuning data: tasks as an optional description turn followed by input / output turns
of i.i.d. samples from one distribution, with the loss on the output contents and their end token.

Rendering uses the model's own chat template: the description is the system turn, each sample's
input is a user turn ("Another sample." when a task has no inputs) and its output an assistant
turn. The loss mask covers exactly each assistant turn's content and the end-of-turn token after
it; the first output is left unscored when a task has neither a description nor inputs (nothing
could predict it).

Task families built from the bundled data (``data/``): Polis votes on a statement, AmbiEnt's nine
annotators' NLI labels, the diffuse-distribution prompts, synthetic coin flips, urns and
categorical draws, and the plan's shaped chosen responses ("chat"). Whole families can be held out
for evaluation.
"""

from __future__ import annotations

import gzip
import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "data"
NO_INPUT = "Another sample."
FAMILIES = ("polis", "ambient", "diffuse", "coin", "urn", "categorical", "chat")


@dataclass
class SpectrumTask:
    family: str
    description: str | None
    samples: list[tuple[str | None, str]] = field(default_factory=list)  # (input or None, output)


def _draw(rng: random.Random, dist: dict[str, float], n: int) -> list[str]:
    names = [k for k, v in dist.items() if v > 0]
    return rng.choices(names, weights=[dist[k] for k in names], k=n)


def polis_tasks(rng: random.Random, n_tasks: int, n_samples: int) -> list[SpectrumTask]:
    # The bundled subset: statements with a vote distribution and at least 10 votes.
    with gzip.open(DATA / "polis-comment-votes-min10.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    tasks = []
    for row in rng.sample(rows, min(n_tasks, len(rows))):
        description = (f"Votes of participants in a Polis deliberation about “{row['topic']}” on the statement: "
                       f"“{row['comment']}”. Each vote is agree, disagree or pass.")
        tasks.append(SpectrumTask("polis", description, [(None, v) for v in _draw(rng, row["dist"], n_samples)]))
    return tasks


def ambient_tasks(rng: random.Random, n_tasks: int, n_samples: int) -> list[SpectrumTask]:
    rows = [json.loads(line) for line in open(DATA / "ambient-nli-label-distributions.jsonl", encoding="utf-8")]
    rows = [r for r in rows if r.get("q0_label_counts")]
    tasks = []
    for row in rng.sample(rows, min(n_tasks, len(rows))):
        description = ("Annotators' labels for whether the premise entails the hypothesis (entailment, neutral or "
                       f"contradiction).\nPremise: {row['premise']}\nHypothesis: {row['hypothesis']}")
        counts = {k: float(v) for k, v in row["q0_label_counts"].items()}
        tasks.append(SpectrumTask("ambient", description, [(None, v) for v in _draw(rng, counts, n_samples)]))
    return tasks


def diffuse_tasks(rng: random.Random, n_tasks: int, n_samples: int) -> list[SpectrumTask]:
    rows = []
    for line in open(DATA / "diffuse-distributions-prompts.jsonl", encoding="utf-8"):
        row = json.loads(line)
        targets = json.loads(row["targets"]) if isinstance(row["targets"], str) else row["targets"]
        if targets:  # open-ended prompts (e.g. fictitious biographies) list no valid set to sample from
            rows.append((row["request"], targets))
    tasks = []
    for _ in range(n_tasks):
        request, targets = rng.choice(rows)
        tasks.append(SpectrumTask("diffuse", request, [(None, rng.choice(targets)) for _ in range(n_samples)]))
    return tasks


def coin_tasks(rng: random.Random, n_tasks: int, n_samples: int) -> list[SpectrumTask]:
    tasks = []
    for i in range(n_tasks):
        p = rng.random()
        flips = ["heads" if rng.random() < p else "tails" for _ in range(n_samples)]
        described = i % 2 == 0  # half say the bias, half leave it to be inferred from the flips
        description = f"Flips of a coin that lands heads with probability {p:.2f}." if described else None
        tasks.append(SpectrumTask("coin", description, [(None, f) for f in flips]))
    return tasks


def urn_tasks(rng: random.Random, n_tasks: int, n_samples: int) -> list[SpectrumTask]:
    colours = ["red", "blue", "green", "yellow", "black", "white"]
    tasks = []
    for _ in range(n_tasks):
        chosen = rng.sample(colours, rng.randint(2, 4))
        counts = {c: rng.randint(1, 9) for c in chosen}
        description = ("Balls drawn with replacement from an urn holding "
                       + ", ".join(f"{n} {c}" for c, n in counts.items()) + " balls.")
        tasks.append(SpectrumTask("urn", description, [(None, d) for d in _draw(rng, counts, n_samples)]))
    return tasks


def categorical_tasks(rng: random.Random, n_tasks: int, n_samples: int) -> list[SpectrumTask]:
    tasks = []
    for _ in range(n_tasks):
        labels = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 6))) for _ in range(rng.randint(2, 5))]
        weights = [rng.gammavariate(1.0, 1.0) for _ in labels]
        dist = dict(zip(labels, weights))
        tasks.append(SpectrumTask("categorical", None, [(None, d) for d in _draw(rng, dist, n_samples)]))
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


BUILDERS = {"polis": polis_tasks, "ambient": ambient_tasks, "diffuse": diffuse_tasks, "coin": coin_tasks,
            "urn": urn_tasks, "categorical": categorical_tasks}


def build_mixture(families: tuple[str, ...], tasks_per_family: int, samples_per_task: int, seed: int,
                  chat_records: list[dict] | None = None) -> list[SpectrumTask]:
    rng = random.Random(seed)
    tasks: list[SpectrumTask] = []
    for family in families:
        if family == "chat":
            tasks += chat_tasks(chat_records or [], rng, tasks_per_family)
        elif family in BUILDERS:
            tasks += BUILDERS[family](rng, tasks_per_family, samples_per_task)
        else:
            raise ValueError(f"unknown Spectrum task family {family!r}; known: {', '.join(FAMILIES)}")
    rng.shuffle(tasks)
    return tasks


def messages_of(task: SpectrumTask) -> list[dict]:
    messages = [{"role": "system", "content": task.description}] if task.description else []
    for given, output in task.samples:
        messages.append({"role": "user", "content": given if given is not None else NO_INPUT})
        messages.append({"role": "assistant", "content": output})
    return messages


def render(tokenizer, task: SpectrumTask, max_length: int | None = None) -> dict:
    """``input_ids`` and ``labels`` (−100 outside the scored output spans)."""
    messages = messages_of(task)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    end_token = tokenizer.eos_token or ""
    spans = []
    skip_first = task.description is None and all(given is None for given, _ in task.samples)
    assistant_seen = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        if not text.startswith(prefix):
            raise ValueError("the chat template does not render a conversation as a prefix of its extension; "
                             "Spectrum tuning needs one that does")
        start = len(prefix)
        end = start + len(message["content"])
        if end_token and text.startswith(end_token, end):
            end += len(end_token)
        assistant_seen += 1
        if skip_first and assistant_seen == 1:
            continue
        spans.append((start, end))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token_id, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]):
        scored = any(a < e and b > s for s, e in spans)
        labels.append(token_id if scored else -100)
    ids = encoded["input_ids"]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}
