"""DPO with a weight per pair, on TRL's DPOTrainer.

TRL's DPOTrainer has no per-pair weights (TRL issue #5613): its loss is the plain batch mean. This
subclass carries each pair's ``weight`` column through the collator and replaces the batch mean
with a weighted mean, Σ wᵢ·ℓᵢ / Σ wᵢ, so a pair of weight 0 contributes exactly as if it had been
dropped. Only the standard sigmoid loss (reverse KL) is weighted; the other loss variants keep
TRL's own code. Reference log-probabilities are computed once before training
(``precompute_ref_log_probs``), as TRL does.

Both of the trainer's slow preparations happen inside its constructor, so it reports them through
``preparing(step, done, total, unit)``: the tokenization in chunks of ``TOKENIZE_CHUNK`` pairs
(TRL's own per-pair tokenization on each chunk, the same rows in the same order) and the reference
log-probabilities a batch at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset, concatenate_datasets
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

WEIGHT_COLUMN = "weight"
# Pairs tokenized between two progress reports: about a second of chat-template tokenization on
# a CPU, so a run of tens of thousands of pairs shows its count moving instead of a minute's silence.
TOKENIZE_CHUNK = 256
TOKENIZE_STEP, REFERENCE_STEP = "tokenizing pairs", "reference log-probs"


def fit_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int | None):
    """(prompt, chosen, rejected) token ids cut to fit ``max_length`` per side without losing the
    pair: the prompt keeps its end (the turns the responses answer), as much of it as the longer
    response leaves room for but at least half the budget; the responses then keep their start.

    TRL cuts prompt + response from one end instead, and with its default (``keep_start``) drops
    every pair whose prompt alone fills ``max_length`` before training, without a word (long
    multi-turn HH prompts: 31 of 192 pairs at 256 tokens). Both sides keep the same prompt."""
    longest = max(len(chosen), len(rejected))
    if max_length is None or len(prompt) + longest <= max_length:
        return prompt, chosen, rejected
    prompt_budget = max(max_length - longest, max_length // 2)
    prompt = prompt[len(prompt) - min(len(prompt), prompt_budget) :]
    room = max_length - len(prompt)
    return prompt, chosen[:room], rejected[:room]


@dataclass
class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator plus a float ``weight`` per pair (1 when the column is absent);
    pairs longer than ``max_length`` are cut by ``fit_pair``."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        fitted = []
        for example in examples:
            prompt, chosen, rejected = fit_pair(
                example["prompt_ids"], example["chosen_ids"], example["rejected_ids"], self.max_length
            )
            fitted.append(dict(example, prompt_ids=prompt, chosen_ids=chosen, rejected_ids=rejected))
        batch = super().torch_call(fitted)
        batch[WEIGHT_COLUMN] = torch.tensor([float(e.get(WEIGHT_COLUMN, 1.0)) for e in examples])
        return batch


class WeightedDPOTrainer(DPOTrainer):
    """DPOTrainer whose sigmoid loss is a weighted mean over pairs."""

    def __init__(
        self,
        model,
        ref_model=None,
        args: DPOConfig | None = None,
        data_collator=None,
        *,
        processing_class=None,
        preparing: Callable[[str, int, int, str], None] | None = None,
        **kwargs,
    ):
        # Set before the base constructor, which tokenizes and computes the reference log-probs.
        self._preparing = preparing
        self._reference_count: list[int] | None = None  # [done, total] batches while precomputing
        if data_collator is None:
            if processing_class is None or processing_class.pad_token_id is None:
                raise ValueError("WeightedDPOTrainer needs a processing_class with a pad token")
            data_collator = WeightedPreferenceCollator(
                pad_token_id=processing_class.pad_token_id,
                max_length=getattr(args, "max_length", None),
                truncation_mode=getattr(args, "truncation_mode", "keep_start"),
                pad_to_multiple_of=getattr(args, "pad_to_multiple_of", None),
            )
        super().__init__(
            model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            processing_class=processing_class,
            **kwargs,
        )
        if (
            list(self.loss_types) != ["sigmoid"]
            or self.f_divergence_type != "reverse_kl"
            or self.use_weighting
            or self.ld_alpha is not None
        ):
            raise ValueError(
                "WeightedDPOTrainer weights the standard DPO loss only: loss_type='sigmoid', "
                "f_divergence_type='reverse_kl', use_weighting=False, ld_alpha=None"
            )

    def _report(self, step: str, done: int, total: int, unit: str) -> None:
        if self._preparing is not None:
            self._preparing(step, done, total, unit)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """TRL's preparation (tokenization), a chunk of pairs at a time with a report after each."""
        if not isinstance(dataset, Dataset) or len(dataset) <= TOKENIZE_CHUNK:
            self._report(TOKENIZE_STEP, 0, len(dataset) if isinstance(dataset, Dataset) else 0, "pairs")
            prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            self._report(TOKENIZE_STEP, len(prepared), len(prepared), "pairs")
            return prepared
        chunks = []
        for start in range(0, len(dataset), TOKENIZE_CHUNK):
            self._report(TOKENIZE_STEP, start, len(dataset), "pairs")
            chunk = dataset.select(range(start, min(start + TOKENIZE_CHUNK, len(dataset))))
            chunks.append(super()._prepare_dataset(chunk, processing_class, args, dataset_name))
        self._report(TOKENIZE_STEP, len(dataset), len(dataset), "pairs")
        return concatenate_datasets(chunks)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        total = math.ceil(len(dataset) / (batch_size * self.accelerator.num_processes))
        self._reference_count = [0, total]
        self._report(REFERENCE_STEP, 0, total, "batches")
        try:
            prepared = super()._precompute_ref_logps(dataset, name, batch_size)
        finally:
            self._reference_count = None
        self._report(REFERENCE_STEP, total, total, "batches")  # also when they were cached: none to compute
        return prepared

    def compute_ref_log_probs(self, model, inputs):
        logps = super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != WEIGHT_COLUMN})
        if self._reference_count is not None:  # precomputing: a batch done
            self._reference_count[0] += 1
            done, total = self._reference_count
            self._report(REFERENCE_STEP, done, total, "batches")
        return logps

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        assert self._signature_columns is not None  # the base class has just set it
        if WEIGHT_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, WEIGHT_COLUMN]

    def _compute_loss(self, model, inputs, return_outputs):
        assert self.model is not None  # the trainer always holds its model
        mode = "train" if self.model.training else "eval"
        weights = inputs[WEIGHT_COLUMN].to(self.accelerator.device, torch.float32)
        model_kwargs = {
            k: v
            for k, v in inputs.items()
            if k not in {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", WEIGHT_COLUMN}
        }
        model_kwargs["use_cache"] = False
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(self.ref_model or self.model, inputs)
        chosen_logratios = chosen_logps - ref_chosen_logps
        rejected_logratios = rejected_logps - ref_rejected_logps
        per_pair = -F.logsigmoid(self.beta * (chosen_logratios - rejected_logratios))
        # A weighted mean: Σ w·ℓ / Σ w (0 for a batch whose weights are all 0, which then trains nothing).
        loss = (per_pair.float() * weights).sum() / weights.sum().clamp(min=1e-12)

        chosen_rewards = self.beta * chosen_logratios.detach()
        rejected_rewards = self.beta * rejected_logratios.detach()
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        metrics["weight/mean"].append(gather(weights).mean().item())
        if return_outputs:
            return loss, outputs
        return loss


def weighted_dpo_config(**overrides) -> DPOConfig:
    """DPOConfig with the settings the weighted trainer needs (reference log-probs once, the weight
    column kept). ``keep_end`` only stops TRL from dropping pairs whose prompt fills ``max_length``;
    the collator cuts every pair to fit first (``fit_pair``), so TRL's own cut never applies."""
    defaults: dict[str, Any] = dict(
        precompute_ref_log_probs=True, loss_type=["sigmoid"], report_to=[], truncation_mode="keep_end"
    )
    defaults.update(overrides)
    return DPOConfig(**defaults)
