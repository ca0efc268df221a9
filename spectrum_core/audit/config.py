"""An audit's settings (light to import: the command line builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from ..settings import plain, setting, validate

MODES = ("token", "difference")
Mode = Literal["token", "difference"]
Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass
class AuditConfig:
    """Every setting of an audit; the command line's flags and the Audit page's form come from here."""

    model: str = setting(
        "bundled", "model: 'bundled' (SmolLM2-135M-Instruct), a hub id, or a local folder", label="Model"
    )
    layer: int | None = setting(
        None, "block whose residual output is read (none: the middle block)", label="Layer read"
    )
    sae: str = setting(
        "train", "'train' an SAE on this dataset, or load a sae-lens SAE: a folder or RELEASE:ID", label="SAE"
    )
    modes: tuple[Mode, ...] = setting(
        MODES, "token: an SAE on response tokens; difference: a WIMHF-style SAE on chosen − rejected", label="Modes"
    )
    max_pairs: int | None = setting(
        None, "audit a seeded sample of this many pairs (none: all)", label="Pairs to audit"
    )
    pooling: Literal["max", "mean"] = setting(
        "max", "how a response's token activations become one number", label="Pooling per response"
    )
    correction: Literal["bh", "bonferroni"] = setting(
        "bh", "multiple-testing correction across all concepts", label="Multiple-testing correction", advanced=True
    )
    fdr_threshold: float = setting(
        0.05,
        "a concept is significant when its q-value is below this; significant concepts always rank first",
        label="False discovery rate",
    )
    seed: int = setting(0, "seed of the pair sample, the SAE, the statistics and the confirmation split", label="Seed")
    confirmation_share: float = setting(
        0.3,
        "share of the prompts held out to confirm the finished list: every statistic that reads the "
        "labels uses the other pairs (0: no confirmation, everything on all pairs)",
        label="Share of prompts held out to confirm",
    )
    null_runs: int = setting(
        20,
        "null runs: the statistics, families and confirmation again with chosen and rejected swapped in a "
        "random half of the pairs, to show what chance alone confirms (0 skips)",
        label="Null runs",
    )
    device: str | None = setting(
        None, "cpu, cuda, cuda:N or mps (none: the best available)", label="Device", advanced=True
    )
    dtype: Dtype | None = setting(
        None,
        "activation dtype (none: bfloat16 where the hardware is fast at it)",
        label="Activation precision",
        advanced=True,
    )
    max_prompt_tokens: int = setting(
        512, "prompts keep their last this many tokens", label="Prompt tokens kept", advanced=True
    )
    max_response_tokens: int = setting(
        512, "responses keep their first this many tokens", label="Response tokens kept", advanced=True
    )
    tokens_per_batch: int | None = setting(
        None,
        "token budget of one extraction batch (none: 2,048 on a CPU, sized from free memory on a GPU)",
        label="Tokens per extraction batch",
        advanced=True,
    )
    share_prompts: bool = setting(
        True,
        "run each pair's prompt once and both responses from its key/value cache (off: each response whole)",
        label="Run each prompt once per pair",
        advanced=True,
    )
    sae_width: int | None = setting(
        None, "SAE latents (none: sized to the tokens)", flags=("--width",), label="SAE latents", advanced=True
    )
    sae_k: int | None = setting(
        None,
        "SAE active latents per token (none: 16 or 32)",
        flags=("--k",),
        label="Active latents per token",
        advanced=True,
    )
    sae_training_tokens: int | None = setting(
        None,
        "SAE training samples (none: sized to the tokens)",
        flags=("--training-tokens",),
        label="SAE training samples",
        advanced=True,
    )
    sae_seeds: int = setting(
        2,
        "SAEs retrained with other seeds on the same activations, to show how often each family is found again",
        label="SAE seeds to check against",
    )
    topics: int = setting(
        8,
        "prompt topics (k-means on sentence embeddings of the user's turns) for each family's lean per topic; 0 skips",
        label="Prompt topics",
    )
    top_examples: int = setting(
        8, "strongest responses kept per feature for its card", label="Examples per concept card", advanced=True
    )
    labelled_concepts: int = setting(
        300,
        "best-ranked families, and SAE concepts, that get offline labels",
        label="Concepts labelled offline",
        advanced=True,
    )
    llm_labelled_concepts: int = setting(
        20,
        "... and LLM labels, from --labeller or the endpoint in SPECTRUM_LLM_BASE_URL / SPECTRUM_LLM_MODEL",
        label="Concepts labelled by an LLM",
    )
    labeller: str | None = setting(
        None,
        "a chat model loaded here (hub id, folder or 'bundled') that labels the top families and concepts, "
        "with no server (none: the endpoint, if configured)",
        label="Local labelling model",
    )

    def __post_init__(self):
        validate(self)
        if not 0 < self.fdr_threshold < 1:
            raise ConfigError(f"AuditConfig: fdr_threshold must be between 0 and 1, got {self.fdr_threshold}")
        if not 0 <= self.confirmation_share < 1:
            raise ConfigError(
                f"AuditConfig: confirmation_share must be at least 0 and below 1, got {self.confirmation_share}"
            )

    def identity(self) -> dict:
        """What determines the result (so the artifact key): everything but the device."""
        data = plain(self)
        data.pop("device")
        return data

    def activation_config(self):
        from .extract.activations import ActivationConfig

        return ActivationConfig(
            layer=self.layer,
            max_prompt_tokens=self.max_prompt_tokens,
            max_response_tokens=self.max_response_tokens,
            tokens_per_batch=self.tokens_per_batch,
            share_prompts=self.share_prompts,
        )


@dataclass
class ScoringConfig:
    """Scoring the dataset's pairs an audit did not see (a sampled audit, ``max_pairs``) for some of
    its concepts, with the audit's own extraction, SAEs and probes (``spectrum score``)."""

    audit: int | None = setting(None, "the audit job whose concepts are scored", label="Audit job", form=False)
    concepts: tuple[str, ...] = setting(
        (),
        "concept ids to score (a family or head scores its members; none: the audit's decided concepts)",
        label="Concepts",
        form=False,
    )
    include_audited: bool = setting(
        False,
        "score the audited pairs too, as a check: their Δ must equal the audit's",
        label="Score the audited pairs too",
        advanced=True,
    )
    device: str | None = setting(
        None, "cpu, cuda, cuda:N or mps (none: the best available)", label="Device", advanced=True
    )

    def __post_init__(self):
        validate(self)

    def identity(self) -> dict:
        """What determines the result (so the artifact key): everything but the device."""
        data = plain(self)
        data.pop("device")
        return data
