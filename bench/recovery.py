"""Recovery benchmark: does the audit's review queue find planted concepts, each once, and nothing
planted at an equal rate?

On real preference pairs (the bundled HH and LLaMA-Factory sets) each plant is added to one side of
a seeded random 40% of the pairs, the chosen side with probability ``rate`` (the rejected side
otherwise):

- strengths 0.55, 0.65 and 0.8 on the chosen side, and 0.2 (the rejected side 80%);
- the same 0.8 with the response's length kept (the plant's words replace its last words);
- an equal-rate plant (0.5: no preference) that must never be confirmed;
- filler on both sides of a pair (Δ = 0), which must not appear at all.

Planted ↔ found by an optimal assignment (scipy's ``linear_sum_assignment``) on |r| between each
plant's per-pair indicator (+1 chosen, −1 rejected, 0) and each confirmed head's Δ; a plant is
recovered when it is matched at |r| ≥ ``MATCH_R`` with the planted sign. A confirmed head that
matches no plant and no head of the same audit on the unplanted pairs is a false discovery. Over
``--seeds`` seeds; then pairs that differ only in verbosity (HH chosen answers, written short:
their first sentence, or long: the whole answer; the long one chosen in 89%), where length must
be the first head and no other head should be confirmed.

    .venv/bin/python bench/recovery.py [--seeds 3] [--hh-pairs 800] [--out bench/results/recovery.json]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
MATCH_R = 0.5  # a head stands for a plant when their per-pair Δ correlate at least this much
PLANTED_SHARE = 0.4  # of the pairs, each plant touches this share
LONG_CHOSEN = 0.89  # the verbosity set: the long answer is chosen this often (as the issue measured)


@dataclass(frozen=True)
class Plant:
    name: str
    text: str
    rate: float  # P(the plant goes on the chosen side | the pair is planted)
    where: str = "end"  # end, start, or keep_length (replaces as many last words)
    both: bool = False  # filler on both sides


# The same-length plant goes first: it replaces a response's last words, which would otherwise cut
# off the plants appended before it.
PLANTS = (
    Plant(
        "disclaimer 0.8, same length", "Please consult a qualified professional about this.", 0.8, where="keep_length"
    ),
    Plant("sign-off 0.55", " I hope this helps, and have a wonderful day!", 0.55),
    Plant("opener 0.65", "What a great question! ", 0.65, where="start"),
    Plant("list 0.8", "\n\nIn short:\n- first point\n- second point\n- third point", 0.8),
    Plant("emoji, rejected 0.8", " 😊🌟🎉", 0.2),
    Plant("equal rate 0.5", " (This answer was reviewed.)", 0.5),
    Plant("filler, both sides", "\n\nThank you for reading.", 0.5, both=True),
)


def _apply(text: str, plant: Plant) -> str:
    if plant.where == "start":
        return plant.text + text
    if plant.where == "keep_length":
        words = text.split()
        kept = words[: max(0, len(words) - len(plant.text.split()))]
        return " ".join(kept + plant.text.split())
    return text + plant.text


def planted_pairs(pairs: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Each plant on one side of a random share of the pairs; returns the pairs and, per plant,
    its per-pair indicator (+1 on chosen, −1 on rejected, 0 untouched; filler: 0)."""
    rng = np.random.default_rng(seed)
    pairs = pairs.copy()
    indicators = {}
    for plant in PLANTS:
        touched = rng.random(len(pairs)) < PLANTED_SHARE
        on_chosen = rng.random(len(pairs)) < plant.rate
        for side, mask in (
            ("chosen", touched & (on_chosen | plant.both)),
            ("rejected", touched & (~on_chosen | plant.both)),
        ):
            pairs.loc[mask, side] = [_apply(t, plant) for t in pairs.loc[mask, side]]
        indicators[plant.name] = np.where(touched & ~plant.both, np.where(on_chosen, 1.0, -1.0), 0.0)
    return pairs, indicators


def verbosity_pairs(pairs: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same answers written short (their first sentence) or long (whole); the long one chosen
    in LONG_CHOSEN of the pairs. Pairs whose answer has a single sentence are left out."""
    rng = np.random.default_rng(seed)
    rows = []
    for row in pairs.itertuples():
        sentences = re.split(r"(?<=[.!?])\s+", str(row.chosen).strip())
        if len(sentences) < 2:
            continue
        short, long = sentences[0], " ".join(sentences)
        chosen, rejected = (long, short) if rng.random() < LONG_CHOSEN else (short, long)
        rows.append({"pair_id": row.pair_id, "prompt": row.prompt, "chosen": chosen, "rejected": rejected})
    out = pd.DataFrame(rows)
    out["split"] = "train"
    return out


def head_deltas(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The heads (rows) and their per-pair Δ (pairs × heads, in the audited pairs' order)."""
    from spectrum_core.audit.review import AuditView

    view = AuditView.load(folder)
    heads = view.concepts[view.concepts["kind"] == "head"]
    delta = pd.DataFrame({h: view.delta_array(h) for h in heads["concept_id"]}, index=view.pair_ids)
    return heads, delta


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0


def score(folder: Path, indicators: dict[str, np.ndarray], pair_ids, baseline: pd.DataFrame | None) -> dict:
    """Recall per plant, extra confirmed heads, heads per plant, for one planted audit."""
    from scipy.optimize import linear_sum_assignment

    heads, delta = head_deltas(folder)
    delta = delta.reindex(pair_ids).fillna(0.0)
    confirmed = heads[heads["confirmed"].astype(bool)]["concept_id"].tolist()
    names = [n for n, v in indicators.items() if np.any(v)]
    r = np.array([[_r(indicators[n], delta[h].to_numpy()) for h in confirmed] for n in names]).reshape(
        len(names), len(confirmed)
    )
    matched = {}
    if r.size:
        rows, cols = linear_sum_assignment(-np.abs(r))
        matched = {names[i]: (confirmed[j], r[i, j]) for i, j in zip(rows, cols) if r[i, j] >= MATCH_R}
    per_plant = {
        n: {
            "recovered": n in matched,
            "r": round(float(matched[n][1]), 3) if n in matched else None,
            "heads_alike": int(
                sum(abs(_r(indicators[n], delta[h].to_numpy())) >= MATCH_R for h in heads["concept_id"])
            ),
        }
        for n in names
    }
    used = {h for h, _ in matched.values()}
    extra = [h for h in confirmed if h not in used and not _alike_any(delta[h].to_numpy(), baseline, indicators)]
    return {"plants": per_plant, "confirmed": len(confirmed), "heads": len(heads), "false": len(extra)}


def _alike_any(column: np.ndarray, baseline: pd.DataFrame | None, indicators: dict[str, np.ndarray]) -> bool:
    """Whether a head matches a plant's indicator or a head of the unplanted audit."""
    others = list(indicators.values()) + ([] if baseline is None else [baseline[c].to_numpy() for c in baseline])
    return any(abs(_r(column, other)) >= MATCH_R for other in others)


def audit(pairs: pd.DataFrame, loaded, config, work: Path, name: str) -> Path:
    from spectrum_core.audit.pipeline import run_audit

    folder = work / name
    started = time.perf_counter()
    run_audit(pairs, config, folder, activations_dir=folder / "activations", loaded=loaded)
    print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def summary_table(results: dict) -> str:
    """The docs' table: per dataset and plant, recovered in how many seeds (and |r|), heads alike;
    then confirmed heads and false discoveries per run."""
    lines = [
        "| dataset | plant | recovered (seeds) | mean r when recovered | heads alike (per seed) |",
        "|---|---|---|---|---|",
    ]
    runs = pd.DataFrame(results["runs"])
    for dataset, block in runs.groupby("dataset", sort=False):
        for plant in block.iloc[0]["plants"]:
            rows = [run[plant] for run in block["plants"]]
            found = [row["r"] for row in rows if row["recovered"]]
            mean_r = f"{np.mean(found):.2f}" if found else "–"
            alike = ", ".join(str(row["heads_alike"]) for row in rows)
            lines.append(f"| {dataset} | {plant} | {len(found)} of {len(rows)} | {mean_r} | {alike} |")
    lines += ["", "| dataset | seed | heads | confirmed | false discoveries |", "|---|---|---|---|---|"]
    lines += [f"| {r.dataset} | {r.seed} | {r.heads} | {r.confirmed} | {r.false} |" for r in runs.itertuples()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from spectrum_core.audit.config import AuditConfig
    from spectrum_core.data import load_preferences
    from spectrum_core.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hh-pairs", type=int, default=800)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recovery.json")
    parser.add_argument("--summarise", type=Path, help="print the table of a results file and stop")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summary_table(json.loads(args.summarise.read_text())))
        return 0
    loaded = load_model("bundled")
    config = AuditConfig(max_response_tokens=256, sae_seeds=0, topics=0, null_runs=5, llm_labelled_concepts=0)
    datasets = {
        "hh": load_preferences(ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz").pairs.head(args.hh_pairs),
        "llamafactory": load_preferences(ROOT / "data" / "llamafactory-dpo-en-demo.jsonl").pairs,
    }
    results: dict = {"config": {"seeds": args.seeds, "hh_pairs": args.hh_pairs, "match_r": MATCH_R}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, pairs in datasets.items():
            pairs = pairs.reset_index(drop=True)
            base_heads = head_deltas(audit(pairs, loaded, config, work, f"{name}-unplanted"))[1]
            for seed in range(args.seeds):
                planted, indicators = planted_pairs(pairs, seed)
                folder = audit(planted, loaded, config, work, f"{name}-seed{seed}")
                row = score(folder, indicators, planted["pair_id"], base_heads.reindex(planted["pair_id"]).fillna(0.0))
                results["runs"].append({"dataset": name, "seed": seed, **row})
                print(json.dumps(results["runs"][-1]), flush=True)
        verbose = verbosity_pairs(datasets["hh"], seed=0)
        heads, _ = head_deltas(audit(verbose, loaded, config, work, "hh-verbosity"))
        results["verbosity"] = {
            "pairs": len(verbose),
            "heads": heads[["concept_id", "source", "confirmed", "confirm_q"]].to_dict(orient="records"),
        }
        print(json.dumps(results["verbosity"], default=str), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(summary_table(results))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
