"""ReSet at demo scale: after multi-task tuning, does continuing on the model's own best-scored
samples improve faithfulness and instruction following together, and does a stricter selection
(less data) do as well?

Two tasks, as in the library's ReSet (`spectrum_core.tuning.reset`):
- faithfulness: a bundled HaluEval question asked with its passage (cut to ``max_passage_chars``;
  only questions whose grounded answer survives the cut), scored by the share of the answer's
  content words the passage holds, and by answer accuracy (the grounded answer's content words
  all appear);
- instruction following: a single-turn LLaMA-Factory demo prompt with two checkable constraints
  added (IFEval-style: word limit, no commas, lowercase, ...), scored by the share satisfied.

Each seed draws its own training questions, requests and constraints; the test set is the same
for every seed (HaluEval's evaluation quarter, the demo file's held-out split, seed 0's
constraints). On it, greedy answers of:
- base: the bundled instruction-tuned model;
- multi-task: LoRA tuned on the two tasks' data mixed (grounded answers; the demo's chosen
  responses cut to ``max_target_words`` and edited to satisfy their constraints, ``satisfy``);
- multi-task, continued: the same model tuned further on its own mixed data for as many steps as
  ReSet takes (the control for ReSet's extra steps);
- ReSet: the multi-task model samples candidates for every training prompt (``temperatures`` ×
  ``candidates_per_temperature``, seeded), each is scored by its task scorer, a prompt's best is
  kept when it reaches ``threshold``, and the model continues on the kept set for
  ``continue_epochs``;
- ReSet-S ("less is more"): the same with ``strict_threshold``: fewer, better samples.

"kept" is the number of examples the condition's last stage tuned on (the mixed set for
multi-task). 95% intervals over seeds. Run: `.venv/bin/python bench/methods/reset.py [--preset
cpu|gpu|smoke]`.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import arguments, finish, preset_settings, summarise

PRESETS = {
    # Sized to finish within 20 minutes on the project's 2-core CPU with the bundled model (a
    # supervised step takes about 4 s here; greedy answers to the test set, per model, about 20 s).
    "cpu": dict(
        model="bundled",
        train_context=16,
        train_constraint=16,
        eval_context=12,
        eval_constraint=12,
        seeds=3,
        sft_steps=16,
        continue_epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        max_length=320,
        max_passage_chars=300,
        # longer demo requests (pasted documents) would make the sequences several times longer
        max_request_chars=400,
        max_target_words=60,
        temperatures=[0.7, 1.0],
        candidates_per_temperature=2,
        max_new_tokens=40,
        eval_new_tokens=48,
        threshold=0.5,
        strict_threshold=1.0,
    ),
    # The same comparison at the paper's scale of data, for a session with an accelerator.
    "gpu": dict(
        model="bundled",
        train_context=150,
        train_constraint=80,
        eval_context=100,
        eval_constraint=24,
        seeds=5,
        sft_steps=300,
        continue_epochs=2,
        batch_size=8,
        learning_rate=5e-4,
        max_length=1024,
        max_passage_chars=None,
        max_request_chars=None,
        max_target_words=120,
        temperatures=[0.7, 1.0],
        candidates_per_temperature=4,
        max_new_tokens=128,
        eval_new_tokens=128,
        threshold=0.5,
        strict_threshold=1.0,
    ),
    # The test suite's: every path once, tiny.
    "smoke": dict(
        model="bundled",
        train_context=2,
        train_constraint=2,
        eval_context=2,
        eval_constraint=2,
        seeds=2,
        sft_steps=2,
        continue_epochs=1,
        batch_size=2,
        learning_rate=1e-3,
        max_length=256,
        max_passage_chars=300,
        max_request_chars=400,
        max_target_words=30,
        temperatures=[1.0],
        candidates_per_temperature=2,
        max_new_tokens=8,
        eval_new_tokens=8,
        threshold=0.5,
        strict_threshold=1.0,
    ),
}
CONDITIONS = ("base", "multi-task", "multi-task, continued", "ReSet", "ReSet-S")
METRICS = ["faithfulness", "answer accuracy", "constraints satisfied", "kept"]
DEMO_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "llamafactory-dpo-en-demo.jsonl"
# What ``satisfy`` adds, kept short so a 40-word limit still leaves room for the response.
BECAUSE_OPENING = "Because you asked:"
CLOSING_SENTENCES = ("I hope this helps.", "Let me know if you need more.", "Thank you.")
CLOSING_QUESTION = "Does that help?"


def context_questions(n: int, split: str, max_chars: int | None, seed: int = 0):
    """``n`` HaluEval questions of ``split`` (in a seeded order) whose grounded answer survives the
    passage cut."""
    from spectrum_core.tasks.halueval import cut_passage, halueval_questions
    from spectrum_core.tasks.scorers import answer_matches

    picked = []
    for question in halueval_questions(10**6, seed=seed, split=split):
        question = replace(question, context=cut_passage(question.context, max_chars))
        if answer_matches(question.context, question.grounded_answer):
            picked.append(question)
        if len(picked) == n:
            break
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} HaluEval {split} questions keep their answer in the cut passage")
    return picked


def constraint_prompts(n: int, split: str, seed: int, max_chars: int | None) -> list[dict]:
    """``n`` single-turn demo requests (of at most ``max_chars``) of the loader's ``split``
    (train or held_out) with two constraints each (seeded), and the demo's chosen response."""
    from spectrum_core.data.loader import load_preferences
    from spectrum_core.tasks.scorers import pick_constraints, with_constraints

    pairs = load_preferences(DEMO_PROMPTS).pairs
    rows = [
        (prompt[0]["content"], chosen)
        for prompt, chosen, row_split in zip(pairs["prompt"], pairs["chosen"], pairs["split"])
        if row_split == split and len(prompt) == 1 and len(prompt[0]["content"]) <= (max_chars or math.inf)
    ]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} single-turn {split} requests in {DEMO_PROMPTS.name}; ask for fewer")
    rng = random.Random(seed)
    out = []
    for request, chosen in rng.sample(rows, n):
        constraints = pick_constraints(rng)
        out.append(
            {
                "messages": [{"role": "user", "content": with_constraints(request, constraints)}],
                "constraints": [c.name for c in constraints],
                "chosen": chosen if isinstance(chosen, str) else chosen[-1]["content"],
            }
        )
    return out


def satisfy(text: str, names: list[str], max_words: int) -> str:
    """``text`` cut to ``max_words`` and edited to meet every named constraint: the multi-task
    baseline's instruction-following target (the way IFEval-style training data is made to
    comply). Added words are counted against the 40-word limit before the cut."""
    added = []
    if "word_because" in names:
        added.append(BECAUSE_OPENING)
    budget = max_words
    if "max_words_40" in names:
        extra = len(BECAUSE_OPENING.split()) if "word_because" in names else 0
        extra += sum(len(s.split()) for s in CLOSING_SENTENCES) if "three_sentences" in names else 0
        extra += len(CLOSING_QUESTION.split()) if "ends_with_question" in names else 0
        budget = min(budget, 40 - extra)
    body = " ".join(text.split()[:budget]).rstrip(" ,;:")
    if body and body[-1] not in ".!?":
        body += "."
    pieces = [*added, body]
    if "three_sentences" in names:
        pieces += list(CLOSING_SENTENCES)
    if "ends_with_question" in names:
        pieces.append(CLOSING_QUESTION)
    out = " ".join(p for p in pieces if p)
    if "no_commas" in names:
        out = out.replace(",", "")
    if "lowercase" in names:
        out = out.lower()
    return out


def evaluate(model, tokenizer, contexts, constraints, max_new_tokens: int) -> dict[str, float]:
    """Greedy answers to the held-out prompts and their scores."""
    from spectrum_core.sampling import sample_responses
    from spectrum_core.tasks.scorers import answer_matches, constraints_satisfied, faithfulness

    model.eval()
    answers = sample_responses(
        model,
        tokenizer,
        [q.messages for q in contexts] + [p["messages"] for p in constraints],
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        batch_size=8,
    )
    context_answers = [a[0] for a in answers[: len(contexts)]]
    constraint_answers = [a[0] for a in answers[len(contexts) :]]
    return {
        "faithfulness": sum(faithfulness(a, q.context) for a, q in zip(context_answers, contexts)) / len(contexts),
        "answer accuracy": sum(answer_matches(a, q.grounded_answer) for a, q in zip(context_answers, contexts))
        / len(contexts),
        "constraints satisfied": sum(
            constraints_satisfied(a, p["constraints"]) for a, p in zip(constraint_answers, constraints)
        )
        / len(constraints),
    }


def reset_candidates(model, tokenizer, prompts, settings: dict, seed: int):
    """ReSet's sampling and scoring: (owner prompt, candidate, task score) for every candidate."""
    import numpy as np

    from spectrum_core.sampling import sample_responses
    from spectrum_core.tuning.reset import task_score

    model.eval()
    owners, candidates = [], []
    for t, temperature in enumerate(settings["temperatures"]):
        sampled = sample_responses(
            model,
            tokenizer,
            [p.messages for p in prompts],
            n=settings["candidates_per_temperature"],
            temperature=temperature,
            max_new_tokens=settings["max_new_tokens"],
            batch_size=16,
            seed=seed * 1000 + t,
        )
        for owner, texts in enumerate(sampled):
            owners += [owner] * len(texts)
            candidates += texts
    scores = np.array([task_score(prompts[o], c) for o, c in zip(owners, candidates)])
    return np.array(owners), candidates, scores


def tune(settings: dict, seed: int, examples: list[dict], steps: int, folder: Path, start: dict | None = None):
    """LoRA supervised tuning through the library's trainer, from a fresh adapter or from the
    adapter weights ``start`` (another run's, loaded into a fresh model: a deep copy of a trained
    peft model kept computing with the original's weights, measured here)."""
    from peft import set_peft_model_state_dict

    from spectrum_core.models import load_model
    from spectrum_core.tuning.config import ReSetRunConfig
    from spectrum_core.tuning.trainers import _with_lora, train_sft

    loaded = load_model(settings["model"])
    config = ReSetRunConfig(
        model=settings["model"],
        seed=seed,
        max_steps=steps,
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        max_length=settings["max_length"],
        save_steps=10**6,
        logging_steps=10**6,
    )
    model = _with_lora(loaded.model, config)
    if start is not None:
        set_peft_model_state_dict(model, start)
    if steps and examples:
        model, _ = train_sft(None, config, folder, examples, loaded, 0, None, model=model)
    return model


def adapter_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {name: value.detach().clone() for name, value in get_peft_model_state_dict(model).items()}


def main() -> None:
    import numpy as np

    from spectrum_core.models import load_model
    from spectrum_core.tuning.reset import ReSetPrompt, select_best, sft_example

    args = arguments(__doc__.splitlines()[0], PRESETS)
    settings = preset_settings(args, PRESETS)
    started = time.perf_counter()
    cut = settings["max_passage_chars"]
    # One test set for every seed.
    eval_contexts = context_questions(settings["eval_context"], "eval", cut)
    eval_constraints = constraint_prompts(settings["eval_constraint"], "held_out", 0, settings["max_request_chars"])
    base = load_model(settings["model"])
    tokenizer = base.tokenizer
    per_seed: dict[str, dict[str, list[float]]] = {}

    def record(condition: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            per_seed.setdefault(condition, {}).setdefault(metric, []).append(float(value))

    def scores_of(model) -> dict[str, float]:
        return evaluate(model, tokenizer, eval_contexts, eval_constraints, settings["eval_new_tokens"])

    def example(messages, response):
        return sft_example(tokenizer, messages, response, settings["max_length"])

    for seed in range(settings["seeds"]):
        train_contexts = context_questions(settings["train_context"], "train", cut, seed)
        request_chars = settings["max_request_chars"]
        train_constraints = constraint_prompts(settings["train_constraint"], "train", seed, request_chars)
        mixed = [example(q.messages, q.grounded_answer) for q in train_contexts] + [
            example(p["messages"], satisfy(p["chosen"], p["constraints"], settings["max_target_words"]))
            for p in train_constraints
        ]
        random.Random(seed).shuffle(mixed)
        prompts = [ReSetPrompt(q.messages, "context", context=q.context) for q in train_contexts] + [
            ReSetPrompt(p["messages"], "constraints", constraints=p["constraints"]) for p in train_constraints
        ]

        record("base", scores_of(base.model))
        with tempfile.TemporaryDirectory() as tmp:
            multi = tune(settings, seed, mixed, settings["sft_steps"], Path(tmp) / "multi-task")
            record("multi-task", {**scores_of(multi), "kept": len(mixed)})
            owners, candidates, scores = reset_candidates(multi, tokenizer, prompts, settings, seed)
            start = adapter_state(multi)
            del multi
            steps_taken = {}
            for name, threshold in (("ReSet", settings["threshold"]), ("ReSet-S", settings["strict_threshold"])):
                kept = select_best(scores, owners, threshold)
                examples = [example(prompts[owners[i]].messages, candidates[i]) for i in kept]
                steps = math.ceil(settings["continue_epochs"] * len(examples) / settings["batch_size"])
                steps_taken[name] = steps
                # nothing kept: the multi-task model as it is
                model = tune(settings, seed, examples, steps, Path(tmp) / name, start=start)
                mean_kept = float(np.mean(scores[kept])) if kept else 0.0
                record(name, {**scores_of(model), "kept": len(examples), "kept score": mean_kept})
                del model
            steps = max(1, steps_taken["ReSet"])
            control = tune(settings, seed, mixed, steps, Path(tmp) / "continued", start=start)
            record("multi-task, continued", {**scores_of(control), "kept": len(mixed)})
            record("candidates", {"kept score": float(scores.mean())})
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    order = [*CONDITIONS, "candidates"]
    summary = summarise({c: per_seed[c] for c in order})
    multi, reset, strict = (summary[c] for c in ("multi-task", "ReSet", "ReSet-S"))
    headline = (
        f"held-out constraints satisfied: multi-task {multi['constraints satisfied']['text']}, "
        f"ReSet {reset['constraints satisfied']['text']}, ReSet-S {strict['constraints satisfied']['text']}; "
        f"faithfulness {multi['faithfulness']['text']} → {reset['faithfulness']['text']}; "
        f"kept {reset['kept']['text']} and {strict['kept']['text']} of {multi['kept']['text']}"
        f" ({settings['seeds']} seeds, {args.preset} preset)"
    )
    finish("reset", args, settings, summary, [*METRICS, "kept score"], headline, started)


if __name__ == "__main__":
    main()
