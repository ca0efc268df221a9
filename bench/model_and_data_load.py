"""Benchmark: first (converting) and cached loads of the bundled model, and data loading speed.

Prints a Markdown table for docs/benchmarks.md. Run: `.venv/bin/python bench/model_and_data_load.py`.
The first load converts into a fresh temporary cache, so it measures the real one-off cost.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    from spectrum_core.data import load_preferences
    from spectrum_core.models import chat_generate, load_model

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["SPECTRUM_CACHE"] = cache
        first, _ = timed(lambda: load_model("bundled"))
        cached, loaded = timed(lambda: load_model("bundled"), repeat=3)
    rows.append(("bundled model, first load (GGUF dequantized to safetensors)", f"{first:.1f} s"))
    rows.append(("bundled model, cached load (median of 3)", f"{cached:.2f} s"))
    generate, reply = timed(
        lambda: chat_generate(
            loaded, [{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=48
        )
    )
    rows.append(
        (
            f"chat reply, {len(reply['token_ids'])} tokens, ended at end-of-sequence: {reply['ended_on_eos']}",
            f"{generate:.2f} s",
        )
    )
    for name in ("hh-rlhf-harmless-base-test.jsonl.gz", "llamafactory-dpo-en-demo.jsonl"):
        seconds, dataset = timed(lambda name=name: load_preferences(ROOT / "data" / name), repeat=3)
        rows.append(
            (
                f"load {name} ({dataset.report.rows_read:,} rows, median of 3)",
                f"{seconds:.2f} s ({dataset.report.rows_read / seconds:,.0f} rows/s)",
            )
        )
    print(f"device: {loaded.device}, dtype: {str(loaded.dtype).removeprefix('torch.')}, cores: {os.cpu_count()}")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
