"""Sparse autoencoders through sae-lens: train a TopK SAE on the dataset's own activations, or load
a pretrained one, and measure how good it is.

Training uses sae-lens's ``SAETrainer`` with our own data provider (an endless iterator of random
batches of response-token activations); the result is saved in sae-lens's inference format, so
``sae_lens.SAE.load_from_disk`` reads it back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import AuditInputError

ProgressFn = Callable[..., None]


class SAELoadError(AuditInputError):
    """A pretrained SAE that cannot be used with this model and layer; the message says why."""


@dataclass
class SAETrainingConfig:
    width: int | None = None  # latents; default sized to the number of training tokens
    k: int | None = None  # active latents per token; default from the width
    training_tokens: int | None = None  # samples seen in training; default: several epochs
    # Small batches and a high learning rate: audits train on 10^4-10^6 tokens, so the number of
    # optimizer steps, not samples, limits quality (measured: 512 x 2e-3 reaches 0.72 explained
    # variance where 4096 x 4e-4 does not start learning in the same budget).
    batch_size: int = 1024
    lr: float = 2e-3
    seed: int = 0
    autocast: bool | None = None  # bfloat16 autocast; default: where the hardware is fast at it


def choose_width(n_tokens: int) -> int:
    """A power of two near n_tokens / 64, between 512 and 16,384.

    With TopK each token switches on k latents, so a latent fires on average n_tokens·k/width
    times. Measured here: 4,608 latents on 40k tokens left over a thousand dead; at n/64 latents
    with k = 32 each latent gets about 2,000 chances to fire, and few die."""
    target = max(n_tokens / 64, 1)
    return int(min(16384, max(512, 2 ** round(math.log2(target)))))


def choose_k(width: int) -> int:
    return 16 if width <= 1024 else 32


def default_training_tokens(n_tokens: int) -> int:
    """About eight passes over the data, at least 300k and at most 8M samples."""
    return int(min(8_000_000, max(300_000, 8 * n_tokens)))


def training_samples(config: SAETrainingConfig, n_tokens: int) -> int:
    """How many samples training on ``n_tokens`` tokens with ``config`` draws."""
    return config.training_tokens or default_training_tokens(n_tokens)


def _batches(
    tokens: torch.Tensor, batch_size: int, seed: int, on_batch: Callable[[int], None] | None
) -> Iterator[torch.Tensor]:
    """Endless random batches (with replacement across batches, none within one), float32."""
    generator = torch.Generator().manual_seed(seed)
    n = tokens.shape[0]
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            batch = tokens[order[start : start + batch_size]].float()
            if on_batch:
                on_batch(batch.shape[0])
            yield batch


@torch.no_grad()
def evaluate_sae(sae, tokens: torch.Tensor, chunk: int = 8192) -> dict:
    """Explained variance, mean L0 and the dead-latent fraction over all ``tokens``."""
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    squared_error = total_variance = 0.0
    l0_sum = 0.0
    mean = tokens[: min(len(tokens), 65536)].float().mean(0)
    for start in range(0, tokens.shape[0], chunk):
        x = tokens[start : start + chunk].float().to(sae.device)
        features = sae.encode(x)
        recon = sae.decode(features)
        squared_error += float(((x - recon) ** 2).sum())
        total_variance += float(((x - mean.to(x.device)) ** 2).sum())
        active = features != 0
        l0_sum += float(active.sum())
        fired |= active.any(0).cpu()
    return {
        "explained_variance": 1.0 - squared_error / max(total_variance, 1e-12),
        "mean_l0": l0_sum / max(tokens.shape[0], 1),
        "dead_fraction": float((~fired).float().mean()),
        "n_dead": int((~fired).sum()),
        "n_eval_tokens": int(tokens.shape[0]),
    }


def _autocast_default(device: str) -> bool:
    from ..models import pick_dtype

    return pick_dtype(device) == torch.bfloat16


def train_sae(
    tokens: torch.Tensor,
    out_dir: Path,
    config: SAETrainingConfig | None = None,
    *,
    model_name: str = "",
    hook: str = "",
    device: str = "cpu",
    progress: ProgressFn | None = None,
    evaluate: bool = True,
) -> tuple[object, dict]:
    """Train a TopK SAE on ``tokens`` (n × d_model) and save it to ``out_dir`` in sae-lens's
    inference format. Returns the loaded inference SAE and its quality metrics (the training's
    settings and time only when ``evaluate`` is False: scoring encodes and decodes every token)."""
    # Importing sae_lens imports the modules the helpers below take their classes from.
    from sae_lens import SAE, SAETrainer

    config = config or SAETrainingConfig()
    n_tokens, d_in = tokens.shape
    width = config.width or choose_width(n_tokens)
    k = config.k or choose_k(width)
    if k >= width:
        raise ValueError(f"k ({k}) must be smaller than the width ({width}).")
    total = training_samples(config, n_tokens)
    batch_size = min(config.batch_size, n_tokens)
    autocast = _autocast_default(device) if config.autocast is None else config.autocast
    torch.manual_seed(config.seed)  # for the initial weights and whatever the trainer draws

    training_sae = _training_sae(d_in, width, k, device, model_name, hook)
    trainer_config = _trainer_config(config, total, batch_size, device, autocast)
    started = time.perf_counter()
    provider = _batches(tokens, batch_size, config.seed, _sample_counter(total, started, progress))
    SAETrainer(trainer_config, training_sae, provider).fit()
    train_seconds = time.perf_counter() - started

    out_dir = Path(out_dir)
    training_sae.save_inference_model(str(out_dir))
    sae = SAE.load_from_disk(str(out_dir), device=device)
    metrics = evaluate_sae(sae, tokens) if evaluate else {}
    metrics.update(
        width=width,
        k=k,
        training_samples=total,
        batch_size=batch_size,
        n_training_tokens=n_tokens,
        train_seconds=round(train_seconds, 2),
        autocast=autocast,
        config=asdict(config),
    )
    return sae, metrics


def _training_sae(d_in: int, width: int, k: int, device: str, model_name: str, hook: str):
    """A freshly initialised sae-lens TopK training SAE (its weights drawn from torch's global
    generator)."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae_config = TopKTrainingSAEConfig(
        d_in=d_in,
        d_sae=width,
        k=k,
        dtype="float32",
        device=device,
        normalize_activations="expected_average_only_in",
        rescale_acts_by_decoder_norm=False,
        metadata=SAEMetadata(model_name=model_name, hook_name=hook),
    )
    return TopKTrainingSAE(sae_config)


def _trainer_config(config: SAETrainingConfig, total: int, batch_size: int, device: str, autocast: bool):
    """sae-lens's trainer settings: the learning-rate schedule and the dead-latent windows scaled
    to the number of optimizer steps."""
    from sae_lens import LoggingConfig
    from sae_lens.config import SAETrainerConfig

    return SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_warm_up_steps=max(1, total // batch_size // 20),
        lr_decay_steps=max(1, total // batch_size // 5),
        device=device,
        autocast=autocast,
        # The default norm estimate pulls 1,000 batches (millions of samples) before training.
        n_batches_for_norm_estimate=8,
        dead_feature_window=max(50, total // batch_size // 4),
        feature_sampling_window=max(100, total // batch_size // 2),
        logger=LoggingConfig(log_to_wandb=False),
    )


def _sample_counter(total: int, started: float, progress: ProgressFn | None) -> Callable[[int], None]:
    """A batch callback that counts the samples the trainer has drawn and reports them."""
    seen = 0

    def on_batch(n: int) -> None:
        nonlocal seen
        seen += n
        if progress:
            progress("sae", min(seen, total), total, unit="samples", elapsed=time.perf_counter() - started)

    return on_batch


def decoder_directions(sae: Any) -> np.ndarray:
    """The SAE's decoder directions (latents × d_model) as float32 on the CPU."""
    return sae.W_dec.detach().float().cpu().numpy()


def load_pretrained_sae(spec: str, *, d_model: int, hook: str, device: str = "cpu"):
    """A pretrained sae-lens SAE from a local folder or ``RELEASE:ID``, checked against the
    model's width and the hook being read."""
    from sae_lens import SAE

    path = Path(spec).expanduser()
    try:
        if path.exists():
            sae = SAE.load_from_disk(str(path), device=device)
        elif ":" in spec:
            release, sae_id = spec.split(":", 1)
            sae = SAE.from_pretrained(release, sae_id, device=device)
        else:
            raise SAELoadError(f"SAE {spec!r} is neither a folder nor RELEASE:ID.")
    except SAELoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - sae-lens raises many types; say which SAE failed
        raise SAELoadError(f"Could not load SAE {spec}: {type(exc).__name__}: {exc}") from None
    if sae.cfg.d_in != d_model:
        raise SAELoadError(
            f"SAE {spec} reads {sae.cfg.d_in}-dimensional activations but the "
            f"model's residual stream has {d_model}; pick an SAE for this model."
        )
    sae_hook = getattr(sae.cfg.metadata, "hook_name", None)
    if sae_hook and sae_hook != hook:
        raise SAELoadError(
            f"SAE {spec} was trained on {sae_hook}, but the audit reads {hook}; pass the matching --layer."
        )
    return sae
