"""The prediction check as a reader sees it: each evaluated run's agreement, with intervals, for
the audit's predictor beside the baselines, and the spread between runs that differ only in seed.

Read by the Results page's Prediction tab and by ``bench/prediction.py`` (one table, two places).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .agreement import agreement
from .prediction import GROUP_DECIDED, GROUP_HEAD, GROUP_SAMPLE, GROUP_SIGNIFICANT

# The rows of each run, in order: the report's key path and the name a reader sees.
PREDICTOR_ROWS = (
    ((), "the audit (SAE concepts)"),
    (("baselines", "length"), "length alone"),
    (("baselines", "words"), "bag of words"),
    (("without_length",), "the audit, length partialled out of both sides"),
    (("by_group", GROUP_HEAD), "the audit, its heads only"),
    (("by_group", GROUP_SIGNIFICANT), "the audit, its significant families only"),
    (("by_group", GROUP_SAMPLE), "the audit, the sampled non-significant families only"),
    (("by_group", GROUP_DECIDED), "the audit, the decided concepts only"),
)
CONTROL_NAMES = {"none": "", "label_flip": "label flip (control)", "shuffle": "shuffled labels (control)"}
# What two runs may differ in and still count as seeds of one run (the plan is compared by its
# hash: the same plan saved twice has two ids).
SEED_FIELDS = ("seed", "plan_id")


def interval_text(figures: dict, metric: str) -> str:
    """ "0.48 [0.31, 0.62]", the point alone where no interval, "–" where no figure."""
    value = figures.get(metric)
    if value is None:
        return "–"
    low, high = figures.get(f"{metric}_low"), figures.get(f"{metric}_high")
    return f"{value:.2f}" if low is None or high is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def agreement_rows(reports: list[dict]) -> pd.DataFrame:
    """One row per (evaluated run, predictor): R², Spearman ρ and sign agreement with their 95%
    bootstrap intervals over prompts, the concepts and training pairs they rest on."""
    rows = []
    for report in reports:
        prediction = report.get("prediction") or {}
        if not prediction.get("concepts"):
            continue
        config = report.get("run_config") or {}
        run = {
            "model": report["target"],
            "method": config.get("method", report.get("method")),
            "CAFT": config.get("caft_mode", "zero") if config.get("caft") else "off",
            "steps": config.get("max_steps"),
            "control": CONTROL_NAMES.get(prediction.get("control", "none"), prediction.get("control")),
        }
        for path, predictor in PREDICTOR_ROWS:
            figures = prediction
            for step in path:
                figures = figures.get(step) or {}
            if not figures:
                continue
            rows.append(
                {
                    **run,
                    "predictor": predictor,
                    "R² [95% CI]": interval_text(figures, "r2"),
                    "Spearman ρ": interval_text(figures, "spearman"),
                    "sign agreement": interval_text(figures, "sign_agreement"),
                    "concepts": figures.get("concepts", prediction.get("concepts")),
                    "training pairs": prediction.get("training_pairs"),
                    "prompts": prediction.get("prompts"),
                }
            )
    return pd.DataFrame(rows)


def _seedless(report: dict) -> tuple:
    config = report.get("run_config") or {}
    settings = tuple(sorted((k, repr(v)) for k, v in config.items() if k not in SEED_FIELDS))
    return report.get("plan_hash"), settings


def seed_spread(reports: list[dict], shifts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """For every two evaluated runs whose settings (plan included) differ only in seed: their R²
    and sign agreement side by side, the difference, and how well one run's realised shifts
    predict the other's (R² between them over the shared concepts: no prediction from the audit
    can beat what a second seed of the same run agrees with the first)."""
    tuned = [r for r in reports if r.get("run_config") and r["target"] in shifts]
    rows = []
    for i, first in enumerate(tuned):
        for second in tuned[i + 1 :]:
            if _seedless(first) != _seedless(second):
                continue
            a, b = (shifts[r["target"]].set_index("concept_id")["shift"] for r in (first, second))
            shared = a.index.intersection(b.index)
            between = agreement(a.loc[shared].to_numpy(), b.loc[shared].to_numpy())
            pa, pb = (r.get("prediction") or {} for r in (first, second))
            rows.append(
                {
                    "runs": f"{first['target']} / {second['target']}",
                    "seeds": f"{first['run_config'].get('seed')} / {second['run_config'].get('seed')}",
                    "R²": f"{_num(pa.get('r2'))} / {_num(pb.get('r2'))}",
                    "R² difference": _difference(pa.get("r2"), pb.get("r2")),
                    "sign agreement": f"{_num(pa.get('sign_agreement'))} / {_num(pb.get('sign_agreement'))}",
                    "sign agreement difference": _difference(pa.get("sign_agreement"), pb.get("sign_agreement")),
                    "R² of one seed's shifts on the other's": between["r2"],
                    "concepts": len(shared),
                }
            )
    return pd.DataFrame(rows)


def _num(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def _difference(a, b) -> float | None:
    return None if a is None or b is None else float(np.abs(a - b))
