"""IA2 priming at demo scale: does aligning the model's no-demonstration activations with its
in-context ones, before supervised tuning, beat supervised tuning alone?

The task: does an answer follow from its passage (bundled HaluEval QA), labelled with arbitrary
words by a seeded remapping, so only the demonstrations can teach it (`spectrum_core.tasks.
remapped`); out of distribution, the same question of AmbiEnt premise / hypothesis pairs with the
same words. For N = 4 and 8 demonstrations and each seed, on held-out queries:

- base: the model, no demonstrations (the words are arbitrary: chance);
- ICL: the model with N demonstrations from the training items;
- SFT only: LoRA tuned on the training queries (no demonstrations) → their word;
- IA2 only: LoRA primed with IA2 (teacher: N other training items as earlier turns; student: the
  query alone; mean squared error of every block's attention output at the answer token);
- IA2 → SFT: the same priming, then the same SFT (the library's `ia2_priming` path).

Tuned models answer without demonstrations. A prediction is the label word with the highest
next-token probability among the label words (their first tokens); its confidence that
probability renormalised over them. Metrics: accuracy and the 15-bin equal-mass ECE; 95%
intervals over seeds. Run: `.venv/bin/python bench/methods/ia2.py [--preset cpu|gpu|smoke]`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from common import arguments, finish, preset_settings, summarise

PRESETS = {
    # Sized to finish within 20 minutes on the project's 2-core CPU with the bundled model: a
    # supervised step takes about 4 s even with passages cut to 240 characters; one seed at the
    # first sizes tried (16 steps, 40 + 40 test items) took 7 minutes, at 10 steps and 24 + 24
    # items 4 to 4.5 minutes (25 minutes in all).
    "cpu": dict(
        model="bundled",
        demos=[4, 8],
        train_questions=20,
        eval_questions=12,
        ood_items=16,
        seeds=3,
        sft_steps=8,
        ia2_steps=40,
        batch_size=4,
        learning_rate=1e-3,
        ia2_learning_rate=1e-3,
        max_length=384,
        max_passage_chars=240,
    ),
    # The paper's scale of data for a session with an accelerator (a 1B+ model through --model).
    "gpu": dict(
        model="bundled",
        demos=[4, 8],
        train_questions=200,
        eval_questions=120,
        ood_items=150,
        seeds=5,
        sft_steps=200,
        ia2_steps=200,
        batch_size=8,
        learning_rate=5e-4,
        ia2_learning_rate=1e-3,
        max_length=512,
        max_passage_chars=None,
    ),
    # The test suite's: every path once, tiny.
    "smoke": dict(
        model="bundled",
        demos=[2],
        train_questions=4,
        eval_questions=2,
        ood_items=4,
        seeds=2,
        sft_steps=2,
        ia2_steps=2,
        batch_size=2,
        learning_rate=1e-3,
        ia2_learning_rate=1e-3,
        max_length=256,
        max_passage_chars=300,
    ),
}
CONDITIONS = ("base", "ICL", "SFT only", "IA2 only", "IA2 → SFT")


def label_token_ids(tokenizer, words: list[str]) -> list[int]:
    ids = []
    for word in words:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise SystemExit(f"label word {word!r} is {len(tokens)} tokens for this tokenizer; pick single-token words")
        ids.append(tokens[0])
    return ids


@torch.inference_mode()
def predictions(model, tokenizer, episodes, words: list[str], with_demonstrations: bool, batch_size: int = 8):
    """(confidence, correct, predicted word index) per episode: the label word with the highest
    next-token probability after the prompt (left-padded batches; RoPE positions are relative, so
    the padding's offset changes nothing)."""
    ids = label_token_ids(tokenizer, words)
    device = next(model.parameters()).device
    confidence, correct, predicted = [], [], []
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(episodes), batch_size):
            chunk = episodes[start : start + batch_size]
            texts = [
                tokenizer.apply_chat_template(
                    e.messages(with_demonstrations), tokenize=False, add_generation_prompt=True
                )
                for e in chunk
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            logits = model(**batch, use_cache=False).logits[:, -1, ids].float()
            probabilities = torch.softmax(logits, dim=-1)
            for episode, row in zip(chunk, probabilities):
                best = int(row.argmax())
                confidence.append(float(row[best]))
                correct.append(float(words[best] == episode.answer))
                predicted.append(best)
    finally:
        tokenizer.padding_side = side
    return confidence, correct, predicted


def tuned(settings: dict, n_demos: int, seed: int, records: list[dict], examples: list[dict], mode: str, folder: Path):
    """A fresh model with a LoRA adapter trained by ``mode``: sft, ia2, or ia2+sft."""
    from spectrum_core.models import load_model
    from spectrum_core.tuning.config import SpectrumRunConfig
    from spectrum_core.tuning.ia2 import ia2_items, ia2_prime, teach_items
    from spectrum_core.tuning.trainers import _with_lora, train_sft

    loaded = load_model(settings["model"])
    config = SpectrumRunConfig(
        model=settings["model"],
        seed=seed,
        max_steps=settings["sft_steps"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        max_length=settings["max_length"],
        save_steps=10**6,
        logging_steps=10**6,
        ia2_priming=mode == "ia2+sft",
        ia2_demos=n_demos,
        ia2_steps=settings["ia2_steps"],
        ia2_learning_rate=settings["ia2_learning_rate"],
    )
    if mode == "ia2":
        model = _with_lora(loaded.model, config)
        items = ia2_items(loaded.tokenizer, records, n_demos, seed, settings["max_length"] * 4)
        teach_items(model, loaded.tokenizer, items, config.ia2_tokens)
        ia2_prime(model, items, settings["ia2_steps"], settings["ia2_learning_rate"], seed=seed)
        return model, loaded.tokenizer
    return train_sft(None, config, folder, examples, loaded, 0, None, ia2_records=records)


def headline_of(summary: dict, settings: dict, preset: str) -> str:
    largest = max(settings["demos"])
    row = {name: summary[f"N={largest} {name}"] for name in CONDITIONS}
    return (
        f"remapped-label task, N = {largest}, held-out accuracy: ICL {row['ICL']['accuracy']['text']}, "
        f"SFT only {row['SFT only']['accuracy']['text']}, IA2 → SFT {row['IA2 → SFT']['accuracy']['text']}; "
        f"agreement with ICL without demonstrations: base {row['base'].get('agrees with ICL', {}).get('text', '–')}, "
        f"IA2 only {row['IA2 only'].get('agrees with ICL', {}).get('text', '–')}"
        f" ({settings['seeds']} seeds, {preset} preset)"
    )


def main() -> None:
    from spectrum_core.metrics.calibration import equal_mass_ece
    from spectrum_core.models import load_model
    from spectrum_core.tasks.remapped import (
        SUPPORTED,
        UNSUPPORTED,
        build_episodes,
        entailment_items,
        query_turn,
        remap_labels,
        support_items,
    )
    from spectrum_core.tuning.reset import sft_example

    args = arguments(__doc__.splitlines()[0], PRESETS)
    settings = preset_settings(args, PRESETS)
    started = time.perf_counter()
    cut = settings["max_passage_chars"]
    train = support_items(settings["train_questions"], seed=0, split="train", max_passage_chars=cut)
    held_out = support_items(settings["eval_questions"], seed=0, split="eval", max_passage_chars=cut)
    ood = (entailment_items("train") + entailment_items("eval"))[: settings["ood_items"]]
    base = load_model(settings["model"])
    per_seed: dict[str, dict[str, list[float]]] = {}
    for n_demos in settings["demos"]:
        for seed in range(settings["seeds"]):
            mapping = remap_labels([SUPPORTED, UNSUPPORTED], seed)
            words = [mapping[SUPPORTED], mapping[UNSUPPORTED]]
            tests = {
                "": build_episodes(train, mapping, n_demos, len(held_out), seed, queries=held_out),
                " (OOD)": build_episodes(train, mapping, n_demos, len(ood), seed, queries=ood),
            }
            records = [
                {
                    "prompt": [query_turn(item.text)],
                    "chosen": [{"role": "assistant", "content": mapping[item.label]}],
                    "group": item.group,  # the same question's other answer is never its demonstration
                }
                for item in train
            ]
            examples = [
                sft_example(base.tokenizer, r["prompt"], r["chosen"][0]["content"], 10**6, end_token=False)
                for r in records
            ]
            models = {"base": (base.model, False), "ICL": (base.model, True)}
            with tempfile.TemporaryDirectory() as tmp:
                for name, mode in (("SFT only", "sft"), ("IA2 only", "ia2"), ("IA2 → SFT", "ia2+sft")):
                    model, _ = tuned(settings, n_demos, seed, records, examples, mode, Path(tmp) / mode)
                    models[name] = (model, False)
                icl: dict[str, list[int]] = {}
                for name in models:  # the table's order: base, ICL, then the tuned models
                    for suffix in tests:
                        per_seed.setdefault(f"N={n_demos} {name}{suffix}", {})
                for name in sorted(models, key=lambda n: n != "ICL"):  # ICL first: the others are compared to it
                    model, with_demos = models[name]
                    for suffix, episodes in tests.items():
                        confidence, correct, predicted = predictions(model, base.tokenizer, episodes, words, with_demos)
                        if name == "ICL":
                            icl[suffix] = predicted
                        row = per_seed.setdefault(f"N={n_demos} {name}{suffix}", {})
                        row.setdefault("accuracy", []).append(sum(correct) / len(correct))
                        row.setdefault("ECE", []).append(equal_mass_ece(confidence, correct, n_bins=15))
                        if name != "ICL":  # IA2's mechanism: answering without demonstrations as ICL does
                            same = sum(a == b for a, b in zip(predicted, icl[suffix])) / len(predicted)
                            row.setdefault("agrees with ICL", []).append(same)
            print(f"N={n_demos} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    summary = summarise(per_seed)
    headline = headline_of(summary, settings, args.preset)
    finish("ia2", args, settings, summary, ["accuracy", "ECE", "agrees with ICL"], headline, started)


if __name__ == "__main__":
    main()
