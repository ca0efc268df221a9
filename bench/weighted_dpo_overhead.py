"""Benchmark: a weighted-DPO step against a plain TRL DPOTrainer step, same model, config and
batches, in one run (target: ratio ≤ 1.05).

Both trainers get the bundled model with the same LoRA, the same 64 HH pairs (weights all 1 for
the weighted one; the loss is then identical), batch 4, reference log-probs precomputed. Each
trainer runs twice, interleaved (plain, weighted, plain, weighted), so drift in the machine's
speed hits both; the per-step wall time is the median over steps after the first two of each
run.

Run: `.venv/bin/python bench/weighted_dpo_overhead.py [--steps 12]`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parent.parent


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import DPOTrainer

    from spectrum_core.data import load_preferences
    from spectrum_core.models import load_model
    from spectrum_core.tuning.weighted_dpo import WeightedDPOTrainer, weighted_dpo_config

    loaded = load_model("bundled")
    pairs = load_preferences(ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz").pairs.head(64)
    records = [
        {
            "prompt": list(r.prompt),
            "chosen": [{"role": "assistant", "content": r.chosen}],
            "rejected": [{"role": "assistant", "content": r.rejected}],
        }
        for r in pairs.itertuples()
    ]
    results: dict[str, list[float]] = {"TRL DPOTrainer": [], "WeightedDPOTrainer": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(2):
            for name, cls, rows in (
                ("TRL DPOTrainer", DPOTrainer, records),
                ("WeightedDPOTrainer", WeightedDPOTrainer, [dict(r, weight=1.0) for r in records]),
            ):
                model = get_peft_model(
                    copy.deepcopy(loaded.model),
                    LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
                )
                config = weighted_dpo_config(
                    output_dir=f"{tmp}/{name}-{repeat}",
                    max_steps=args.steps,
                    per_device_train_batch_size=4,
                    max_length=384,
                    learning_rate=1e-4,
                    bf16=True,
                    use_cpu=True,
                    seed=0,
                    save_strategy="no",
                    logging_steps=1000,
                    disable_tqdm=True,
                    precompute_ref_batch_size=8,
                )
                timer = StepTimer()
                trainer = cls(
                    model,
                    args=config,
                    train_dataset=Dataset.from_list(rows),
                    processing_class=loaded.tokenizer,
                    callbacks=[timer],
                )
                trainer.train()
                results[name] += timer.times[2:]
                print(f"{name} run {repeat + 1}: median step {statistics.median(timer.times[2:]):.3f} s")
    plain = statistics.median(results["TRL DPOTrainer"])
    weighted = statistics.median(results["WeightedDPOTrainer"])
    print("| weighted DPO step ÷ TRL DPO step (bundled model, LoRA r=8, batch 4, 384 tokens) | result |\n|---|---|")
    print(f"| TRL DPOTrainer, median step | {plain:.3f} s |")
    print(f"| WeightedDPOTrainer, median step | {weighted:.3f} s |")
    print(f"| ratio (target ≤ 1.05) | {weighted / plain:.3f} |")


if __name__ == "__main__":
    main()
