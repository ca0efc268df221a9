"""Benchmark: does a whole audit's memory stay bounded, and its time per pair flat, as the data grows?

Synthetic pairs (seeded; words drawn from the bundled HH responses, one planted phrase chosen more
often than rejected so the audit has something to find) are audited at each size with a tiny
random Llama built from a config (no download; ``gpu_check.build_model``'s "tiny" size with the
bundled tokenizer). Each size runs in its own process, so its peak RSS is its own.

The audit runs at its defaults (confirmation split, 20 null runs, 2 SAE seeds, topics, labels;
``--null-runs``, ``--sae-seeds`` and ``--topics`` lighten it, since each null run and the topics'
sentence embeddings cost time in proportion to the pairs) except the SAE's size, fixed for every
size: 1,024 latents, k = 16, 1M training samples. The
default grows the SAE with the data up to 16,384 latents and 8M samples, which on two cores
makes each SAE of this benchmark take a quarter of an hour and would measure the SAE's settings,
not how the audit scales (the SAE's cost stops growing at 1M training tokens in any case,
``MAX_SAE_TRAINING_TOKENS``).

    .venv/bin/python bench/audit_scale.py [--sizes 10000,30000,100000] [--null-runs N] [--sae-seeds N]
        [--topics N] [--out bench/results/audit_scale.json]

Targets (issue 26): peak RSS at 100k pairs ≤ 6 GB; time per pair growing by at most 1.3× from the
smallest size to the largest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

PLANTED = "I am sorry, but"  # the planted phrase: in 60% of chosen and 30% of rejected responses
WORDS = (12, 60)  # words per response, uniform in this range (HH responses are about this long)
SAE = dict(sae_width=1024, sae_k=16, sae_training_tokens=1_000_000)

CHILD = """
import json, logging, resource, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(message)s")
logging.getLogger("spectrum_core.audit.pipeline").setLevel(logging.INFO)  # each step's time and peak
sys.path.insert(0, sys.argv[4])
from audit_scale import synthetic_pairs, SAE
from spectrum_core.audit.config import AuditConfig
from spectrum_core.audit.pipeline import run_audit
from spectrum_core.models import load_model
n, model_dir, folder, settings = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[5])
pairs = synthetic_pairs(n)
loaded = load_model(model_dir, device="cpu")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
started = time.perf_counter()
config = AuditConfig(model=model_dir, **SAE, **settings)
result = run_audit(pairs, config, folder + "/audit", activations_dir=folder + "/acts", loaded=loaded)
heads = result.concepts[result.concepts["kind"] == "head"]
seconds = time.perf_counter() - started
report = result.report
print(json.dumps({
    "pairs": n,
    "seconds": round(seconds, 1),
    # The audit resets the kernel's peak at each step (for its per-step figures), which resets
    # ru_maxrss too: the whole run's peak is the largest step's, or what came before the audit.
    "peak_rss_gb": round(max([before, *report.peak_memory_gb.values()]), 2),
    "peak_before_audit_gb": round(before, 2),
    "response_tokens": report.activations.n_response_tokens,
    "timings": {k: round(v, 1) for k, v in report.timings.items()},
    "peak_memory_gb": report.peak_memory_gb,
    "settings": settings,
    "heads": len(heads),
    "confirmed_heads": int(heads["confirmed"].fillna(False).astype(bool).sum()),
}))
"""


def synthetic_pairs(n: int, seed: int = 0):
    """``n`` preference pairs of random HH words, one-turn prompts, 90% train / 10% held out."""
    import numpy as np
    import pandas as pd

    from spectrum_core.data import load_preferences

    hh = load_preferences(ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz").pairs
    vocabulary = sorted({w for text in hh["chosen"] for w in text.split()})
    del hh
    rng = np.random.default_rng(seed)

    def texts(count: int, planted_share: float) -> list[str]:
        # Words as Python strings, joined text by text: a NumPy array of fixed-width strings for
        # every word of 100k pairs would itself take gigabytes and count in the peak.
        lengths = rng.integers(*WORDS, size=count)
        picks = rng.integers(0, len(vocabulary), size=int(lengths.sum())).tolist()
        planted = (rng.random(count) < planted_share).tolist()
        out, start = [], 0
        for length, plant in zip(lengths.tolist(), planted):
            words = " ".join(vocabulary[i] for i in picks[start : start + length])
            out.append(PLANTED + " " + words if plant else words)
            start += length
        return out

    prompts = [[{"role": "user", "content": text + "?"}] for text in texts(n, 0.0)]
    return pd.DataFrame(
        {
            "pair_id": [f"{i:016x}" for i in range(n)],
            "prompt": prompts,
            "chosen": texts(n, 0.6),
            "rejected": texts(n, 0.3),
            "split": np.where(rng.random(n) < 0.9, "train", "held_out"),
            "source": [f"synthetic {i}" for i in range(n)],
            "duplicates": 0,
            "metadata": [{} for _ in range(n)],
        }
    )


def run_size(n: int, model_dir: Path, settings: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(model_dir), folder, str(ROOT / "bench"), json.dumps(settings)],
            stdout=subprocess.PIPE,  # the result; the child's log (each step's time and peak) goes to stderr
            text=True,
        )
    if done.returncode != 0:
        raise SystemExit(f"the audit of {n:,} pairs failed (its log above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from gpu_check import build_model

    from spectrum_core.audit.config import AuditConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "audit_scale.json")
    defaults = AuditConfig()
    parser.add_argument("--null-runs", type=int, default=defaults.null_runs)
    parser.add_argument("--sae-seeds", type=int, default=defaults.sae_seeds)
    parser.add_argument("--topics", type=int, default=defaults.topics)
    args = parser.parse_args()
    settings = {"null_runs": args.null_runs, "sae_seeds": args.sae_seeds, "topics": args.topics}
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as model_dir:
        build_model("tiny", Path(model_dir), "bundled")
        for n in sizes:
            rows.append(run_size(n, Path(model_dir), settings))
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    base = rows[0]["seconds"] / rows[0]["pairs"]
    print(
        "\n| pairs | response tokens | peak RSS (GB) | of it before the audit | audit (min) | ms per pair | × the smallest |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        per_pair = row["seconds"] / row["pairs"]
        print(
            f"| {row['pairs']:,} | {row['response_tokens']:,} | {row['peak_rss_gb']} | {row['peak_before_audit_gb']} "
            f"| {row['seconds'] / 60:.1f} "
            f"| {1000 * per_pair:.1f} | {per_pair / base:.2f} |"
        )


if __name__ == "__main__":
    main()
