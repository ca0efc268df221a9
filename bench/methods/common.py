"""What the method benchmarks share: presets, the seed loop's aggregation, and the results file
the shared report (`report.py`) and the Tuning page read.

Each script measures one method against its baseline at several seeds and writes
``results/<method>.json``: per condition and metric the mean and 95% interval over seeds (the
values per seed kept too), and one headline line for the Tuning page. ``--preset smoke`` (the
test suite's) writes to a temporary file unless ``--out`` says otherwise, so it never replaces
a measured result.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

from spectrum_core.metrics.seeds import over_seeds

RESULTS = Path(__file__).resolve().parent / "results"


def arguments(description: str, presets: dict[str, dict]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", choices=sorted(presets), default="cpu")
    parser.add_argument("--seeds", type=int, default=None, help="override the preset's number of seeds")
    parser.add_argument(
        "--model", default=None, help="override the preset's model: 'bundled', a hub id or a local folder"
    )
    parser.add_argument("--out", type=Path, default=None, help="results file (default: results/<method>.json)")
    return parser.parse_args()


def preset_settings(args: argparse.Namespace, presets: dict[str, dict]) -> dict:
    """The chosen preset with the command line's overrides."""
    settings = dict(presets[args.preset])
    if args.seeds:
        settings["seeds"] = args.seeds
    if args.model:
        settings["model"] = args.model
    return settings


def summarise(per_seed: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict]]:
    """{condition: {metric: [value per seed]}} → the same with mean, low, high, n and values."""
    out: dict[str, dict[str, dict]] = {}
    for condition, metrics in per_seed.items():
        out[condition] = {}
        for metric, values in metrics.items():
            summary = over_seeds(values)
            out[condition][metric] = {
                "mean": summary.mean,
                "low": summary.low,
                "high": summary.high,
                "n": summary.n,
                "values": values,
                "text": summary.text(),
            }
    return out


def markdown(summary: dict[str, dict[str, dict]], metrics: list[str]) -> str:
    lines = ["| condition | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for condition, values in summary.items():
        cells = [values[m]["text"] if m in values else "" for m in metrics]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(method: str, preset: str, settings: dict, summary: dict, headline: str, started: float, out: Path | None):
    """The results file; ``smoke`` runs go to ``out`` only."""
    if out is None:
        if preset == "smoke":
            return None
        out = RESULTS / f"{method}.json"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "method": method,
        "preset": preset,
        "settings": settings,
        "results": summary,
        "headline": headline,
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
    }
    out.write_text(json.dumps(record, indent=1, default=float))
    return out


def finish(method: str, args, settings: dict, summary: dict, metrics: list[str], headline: str, started: float):
    """Print the table and the headline, and write the results file."""
    print(markdown(summary, metrics))
    print(headline)
    path = write(method, args.preset, settings, summary, headline, started, args.out)
    if path:
        print(f"written: {path}")
