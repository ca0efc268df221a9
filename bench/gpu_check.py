"""The GPU check: a whole audit on a randomly initialised Llama of about 1B parameters, built from
a config (no downloads: the machine with the GPU reaches no hub), on bundled HH pairs.

Prints real tokens per second of the extraction (each pair's prompt once plus both responses,
what the pass computes), the floor a bfloat16 matmul rate measured in the same run allows (2
FLOPs per weight of blocks 0..layer per token), their ratio, peak GPU memory, each stage's time
and the whole audit's. Random weights compute exactly as trained ones do; the concepts found are
meaningless and not printed.

With more than one GPU visible it also runs the audit as two processes (`accelerate launch`),
which must agree on one batch budget.

Run on a GPU machine: `bash bench/gpu_check.sh` (the `1b` size, 2,000 pairs). `--size tiny
--pairs 24` runs the same path on a CPU in a minute (the test suite does).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import cast

import torch

ROOT = Path(__file__).resolve().parent.parent
HH = ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
# Llama-3.2-1B's shape (16 blocks of width 2,048, grouped-query attention 32/8, MLP 8,192) with
# the bundled tokenizer's 49,152-token vocabulary: 1.07B parameters. `tiny` is for the CPU test.
SIZES = {
    "1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
    ),
}


def build_model(size: str, folder: Path, tokenizer_source: str) -> int:
    """A random Llama of ``size`` saved with the tokenizer of ``tokenizer_source`` (``bundled``,
    a folder or a hub id); its parameter count."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from spectrum_core.models import is_bundled, load_model

    if is_bundled(tokenizer_source):
        tokenizer = load_model("bundled", device="cpu").tokenizer
    else:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SIZES[size],
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def matmul_floor(loaded, layer: int) -> tuple[float, int]:
    """(tokens/s the pass's own matrix multiplies allow at the rate measured now, weights per token)."""
    from audit_extraction import matmul_rate

    from spectrum_core.audit.extract.activations import matmul_params

    params = matmul_params(loaded.model, layer)
    return matmul_rate(loaded.model, layer) / (2 * params), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--device", default=None, help="cuda, cpu ... (none: the best available)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--tokenizer",
        default="bundled",
        help="tokenizer folder or hub id (default: the bundled model's; a saved copy of it lets a machine "
        "without the bundled model's package run the check)",
    )
    args = parser.parse_args()

    from spectrum_core.audit.extract.activations import default_layer
    from spectrum_core.audit.pipeline import AuditConfig
    from spectrum_core.audit.runner import run_audit_in_workspace
    from spectrum_core.models import load_model
    from spectrum_core.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"llama-{args.size}-random"
        n_params = build_model(args.size, folder, args.tokenizer)
        loaded = load_model(str(folder), device=args.device)
        layer = default_layer(loaded.model)
        floor, weights = matmul_floor(loaded, layer)
        if loaded.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        config = AuditConfig(
            model=str(folder),
            device=args.device,
            max_pairs=args.pairs,
            sae_seeds=0,
            topics=0,
            labelled_concepts=50,
            llm_labelled_concepts=0,
            **({"sae_training_tokens": 20_000} if args.size == "tiny" else {}),
        )
        started = time.perf_counter()
        outcome = run_audit_in_workspace(Workspace(Path(tmp) / "ws"), HH, config)
        audit_seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if loaded.device.startswith("cuda") else None
        manifest = asdict(outcome.report.activations)
        timings = outcome.report.timings
        # More than one GPU visible: the multi-process path too (batch budgets agreed across GPUs).
        several = torch.cuda.device_count() > 1 and args.device in (None, "cuda")
        two = two_process_audit(folder, args.pairs, Path(tmp) / "ws-two") if several else {}
    response_tokens = manifest["n_response_tokens"]
    computed = (manifest["n_tokens_total"] - response_tokens) // 2 + response_tokens
    rate = computed / timings["activations"]
    results = {
        "device": torch.cuda.get_device_name() if loaded.device.startswith("cuda") else loaded.device,
        "model": f"random Llama {args.size}, {n_params / 1e6:,.1f}M parameters, {loaded.dtype}",
        "pairs": outcome.report.n_pairs,
        "tokens_per_batch": manifest["tokens_per_batch"],
        "tokens_computed": computed,
        "tokens_per_second": rate,
        "floor_tokens_per_second": floor,
        "ratio": rate / floor,
        "weights_per_token": weights,
        "peak_gpu_memory_gib": None if peak is None else peak / 2**30,
        "stage_seconds": timings,
        "audit_seconds": audit_seconds,
        **two,
    }
    print(
        f"{results['device']}: {results['model']}, blocks 0..{layer}, {results['pairs']:,} HH pairs, "
        f"{manifest['tokens_per_batch']:,} tokens per batch"
    )
    print("| measurement | result |\n|---|---|")
    print(f"| extraction, real tokens/s ({computed:,} tokens: prompts once, both responses) | {rate:,.0f} |")
    print(f"| floor: bf16 matmul rate measured now, 2 FLOPs × {weights / 1e6:.0f}M weights per token | {floor:,.0f} |")
    print(f"| ratio | {rate / floor:.2f} |")
    if peak is not None:
        print(f"| peak GPU memory | {peak / 2**30:.1f} GiB |")
    print(f"| stages (s) | {', '.join(f'{k} {v:.1f}' for k, v in timings.items())} |")
    print(f"| whole audit | {audit_seconds:.0f} s |")
    if two:
        print(f"| whole audit, two processes (one per GPU, no null runs) | {two['two_process_seconds']:.0f} s |")
        print(f"| agreed tokens per batch, two processes | {two['two_process_tokens_per_batch']:,} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


def two_process_audit(folder: Path, pairs: int, workspace: Path) -> dict:
    """The same audit under `accelerate launch` with two processes, one per GPU: each extracts
    half the shards with the batch budget the processes agree on (the least of their free
    memories'); its wall time, and the budget the shared manifest records."""
    import subprocess
    import sys

    from spectrum_core.artifacts import AuditArtifact
    from spectrum_core.workspace import Workspace

    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "spectrum_core.cli"]
    audit = ["--workspace", str(workspace), "audit", str(HH), "--model", str(folder), "--max-pairs", str(pairs)]
    audit += ["--sae-seeds", "0", "--topics", "0", "--llm-labelled-concepts", "0", "--null-runs", "0"]
    started = time.perf_counter()
    done = subprocess.run([*launch, *audit], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"two-process audit failed:\n{done.stderr[-3000:]}")
    job = Workspace(workspace).jobs("audit")[0]
    report = AuditArtifact(cast(Path, Workspace(workspace).find_artifact(cast(str, job.artifact_key)))).report
    return {"two_process_seconds": seconds, "two_process_tokens_per_batch": report.activations.tokens_per_batch}


if __name__ == "__main__":
    main()
