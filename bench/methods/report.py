"""The methods' shared report: every measured result in `results/` as one Markdown document (the
"Method benchmarks" tables of docs/benchmarks.md come from here).

Run: `.venv/bin/python bench/methods/report.py` after any of `spectrum.py`, `ia2.py`.
"""

from __future__ import annotations

import json

from common import RESULTS, markdown

TITLES = {"spectrum": "Spectrum Tuning", "ia2": "IA2 priming", "reset": "ReSet"}


def main() -> None:
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        raise SystemExit(f"no results in {RESULTS}: run a method's script first")
    for path in files:
        record = json.loads(path.read_text())
        results = record["results"]
        metrics = list(dict.fromkeys(m for values in results.values() for m in values))
        title = TITLES.get(record["method"], record["method"])
        print(f"### {title}\n")
        print(
            f"{record['preset']} preset, {record['settings'].get('seeds')} seeds, {record['minutes']} min, "
            f"{record['date']}, commit {record['commit']}; mean [95% interval over seeds].\n"
        )
        print(markdown(results, metrics))
        print(f"\n{record['headline']}\n")


if __name__ == "__main__":
    main()
