"""Benchmark: activation extraction throughput against a matmul floor, and SAE training time.

Throughput counts real (non-padding) tokens per second. The floor is what the pass's own
matrix multiplies would allow: 2 FLOPs per token for each weight in blocks 0..layer (the pass
stops there; embeddings are a lookup and the head never runs), at the bfloat16 matmul rate
measured in this same run on the model's own weight shapes. Ratio = measured / floor.

Run: `.venv/bin/python bench/audit_extraction.py [N_PAIRS]` (default 500).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def matmul_rate(model, layer: int, n_tokens: int = 8192) -> float:
    """FLOP/s of the pass's own linear layers applied to ``n_tokens`` tokens, in its dtype."""
    from spectrum_core.audit.extract.activations import decoder_layers

    weights = [p for block in decoder_layers(model)[: layer + 1] for p in block.parameters() if p.dim() == 2]
    inputs = {w.shape[1]: torch.randn(n_tokens, w.shape[1], dtype=w.dtype, device=w.device) for w in weights}

    def run():
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)
        if weights[0].is_cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        run()
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
    return 2 * n_tokens * sum(w.numel() for w in weights) / best


def main() -> None:
    from spectrum_core.audit.extract.activations import (
        ActivationConfig,
        default_layer,
        extract_activations,
        matmul_params,
    )
    from spectrum_core.audit.sae import SAETrainingConfig, train_sae
    from spectrum_core.data import load_preferences
    from spectrum_core.models import load_model

    n_pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    loaded = load_model("bundled")
    layer = default_layer(loaded.model)
    params = matmul_params(loaded.model, layer)
    rate = matmul_rate(loaded.model, layer)
    floor = rate / (2 * params)
    pairs = load_preferences(ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz").pairs.head(n_pairs)
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        # Each response whole (prompt run twice per pair), then each prompt once: same run, same
        # machine state, so the two rows compare directly.
        for share in (False, True):
            config = ActivationConfig(layer=layer, share_prompts=share)
            started = time.perf_counter()
            store = extract_activations(loaded, pairs, Path(folder) / f"acts-{share}", config)
            runs[share] = (time.perf_counter() - started, store)
        rate_after = matmul_rate(loaded.model, layer)
        training, info = store.training_tokens()
        started = time.perf_counter()
        _, metrics = train_sae(training, Path(folder) / "sae", SAETrainingConfig(), device=loaded.device)
        sae_seconds = time.perf_counter() - started
    manifest = store.manifest
    response_tokens = manifest["n_response_tokens"]
    prompt_tokens = (manifest["n_tokens_total"] - response_tokens) // 2  # each pair's prompt, once
    print(
        f"model: bundled SmolLM2-135M-Instruct, blocks 0..{layer}, {params / 1e6:.1f}M matmul "
        f"weights, {loaded.dtype}, {torch.get_num_threads()} threads"
    )
    print(f"matmul rate: {rate / 1e9:.0f} GFLOP/s before, {rate_after / 1e9:.0f} after extraction")
    print(
        f"{n_pairs} HH pairs: {prompt_tokens:,} prompt tokens (once per pair), {response_tokens:,} response "
        f"tokens kept; matmul floor {floor:,.0f} tokens/s (2 FLOPs × {params / 1e6:.1f}M weights per token)"
    )
    print("| extraction | time | pairs/s | tokens computed | tokens computed/s | ÷ floor |")
    print("|---|---|---|---|---|---|")
    for share, (seconds, _) in runs.items():
        computed = prompt_tokens * (1 if share else 2) + response_tokens
        name = "prompt once per pair (shared key/value cache)" if share else "each response with its prompt"
        print(
            f"| {name} | {seconds:.1f} s | {n_pairs / seconds:.1f} | {computed:,} | {computed / seconds:,.0f} "
            f"| {computed / seconds / floor:.2f} |"
        )
    speedup = runs[False][0] / runs[True][0]
    print(f"shared prompts: {speedup:.2f}× the pairs per second")
    print(
        f"| SAE training, {info['n_tokens']:,} tokens, {metrics['width']} latents, k={metrics['k']}, "
        f"{metrics['training_samples']:,} samples | {sae_seconds:.1f} s (explained variance "
        f"{metrics['explained_variance']:.3f}, dead {metrics['dead_fraction']:.1%}) |"
    )


if __name__ == "__main__":
    main()
