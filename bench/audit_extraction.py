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
    from spectrum_core.audit.activations import decoder_layers

    weights = [p for block in decoder_layers(model)[: layer + 1] for p in block.parameters() if p.dim() == 2]
    inputs = {w.shape[1]: torch.randn(n_tokens, w.shape[1], dtype=w.dtype) for w in weights}

    def run():
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)

    with torch.inference_mode():
        run()
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
    return 2 * n_tokens * sum(w.numel() for w in weights) / best


def main() -> None:
    from spectrum_core.audit.activations import ActivationConfig, default_layer, extract_activations, matmul_params
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
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        store = extract_activations(loaded, pairs, Path(folder) / "acts", ActivationConfig(layer=layer))
        seconds = time.perf_counter() - started
        tokens = store.manifest["n_tokens_total"]
        measured = tokens / seconds
        rate_after = matmul_rate(loaded.model, layer)
        training, info = store.training_tokens()
        started = time.perf_counter()
        _, metrics = train_sae(training, Path(folder) / "sae", SAETrainingConfig(), device=loaded.device)
        sae_seconds = time.perf_counter() - started
    print(
        f"model: bundled SmolLM2-135M-Instruct, blocks 0..{layer}, {params / 1e6:.1f}M matmul "
        f"weights, {loaded.dtype}, {torch.get_num_threads()} threads"
    )
    print(f"matmul rate: {rate / 1e9:.0f} GFLOP/s before, {rate_after / 1e9:.0f} after extraction")
    print("| measurement | result |\n|---|---|")
    print(
        f"| extraction, {n_pairs} HH pairs ({tokens:,} real tokens, {store.manifest['n_response_tokens']:,} "
        f"response tokens kept) | {seconds:.1f} s, {measured:,.0f} tokens/s |"
    )
    print(
        f"| matmul floor (2 FLOPs × {params / 1e6:.1f}M weights per token at {rate / 1e9:.0f} GFLOP/s) "
        f"| {floor:,.0f} tokens/s |"
    )
    print(f"| ratio measured / floor (target ≥ 0.6) | {measured / floor:.2f} |")
    print(
        f"| SAE training, {info['n_tokens']:,} tokens, {metrics['width']} latents, k={metrics['k']}, "
        f"{metrics['training_samples']:,} samples | {sae_seconds:.1f} s (explained variance "
        f"{metrics['explained_variance']:.3f}, dead {metrics['dead_fraction']:.1%}) |"
    )


if __name__ == "__main__":
    main()
