"""Reading evaluations back: summary lines, the comparison table across evaluated models, and the
exported report (JSON and a self-contained HTML page)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .. import constants as names

SURPRISES_SHOWN = 10  # in the summary lines; the artifact's shifts.parquet holds them all


def load_report(folder: Path) -> dict:
    return json.loads((Path(folder) / names.REPORT_FILE).read_text())


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def headline(report: dict) -> dict:
    """The numbers a researcher compares first, flat (None where a metric does not apply)."""
    steer, cov = report.get("steerability") or {}, report.get("coverage") or {}
    polis = (report.get("alignment") or {}).get("polis") or {}
    ambient = (report.get("alignment") or {}).get("ambient") or {}
    final = (report.get("faithfulness") or [{}])[-1]
    reward, preference = report.get("reward") or {}, report.get("preference") or {}
    diversity = report.get("diversity") or {}
    prediction, reemergence = report.get("prediction") or {}, report.get("reemergence") or {}
    return {
        "model": report.get("target"),
        "steerability loss ≥ 1 (nats)": steer.get("loss_ge1"),
        "steerability floor (nats)": steer.get("ideal_loss_ge1"),
        "token calibration error": steer.get("calibration_error"),
        "valid share": cov.get("valid_share"),
        "yield": cov.get("yield"),
        "coverage": cov.get("coverage"),
        "uniqueness": cov.get("uniqueness"),
        "Polis JS": polis.get("js"),
        "Polis JS, closest group": polis.get("js_closest_group"),
        "Polis mode match": polis.get("mode_match"),
        "Polis log10 mass on options": polis.get("log10_mass"),
        "AmbiEnt JS": ambient.get("js"),
        "AmbiEnt mode match": ambient.get("mode_match"),
        "HaluEval accuracy": final.get("answer_accuracy"),
        "faithfulness": final.get("faithfulness"),
        "constraints satisfied": final.get("constraints_satisfied"),
        "distinct-2": diversity.get("distinct_2"),
        "embedding diversity": diversity.get("embedding_diversity"),
        "embedding diversity, per diffuse prompt": cov.get("embedding_diversity"),
        "implicit reward accuracy": preference.get("accuracy"),
        "shaped reward (mean)": reward.get("tuned_mean"),
        "win rate vs base": reward.get("win_rate"),
        "suppressed concepts that rose": len(report["prevalence"]["flagged"])
        if (report.get("prevalence") or {}).get("compared")
        else None,
        "prediction R² (families)": prediction.get("r2"),
        "prediction Spearman ρ": prediction.get("spearman"),
        "sign agreement (families that moved)": prediction.get("sign_agreement"),
        "families that moved": prediction.get("moved"),
        "suppressed concepts that re-emerged": len(reemergence["reemerged"]) if reemergence else None,
    }


# Each headline metric: which way is better ("" where neither is: a reference or a count) and
# what it measures, in a line. Every name ``headline`` gives has an entry (a test checks).
METRIC_GUIDE: dict[str, tuple[str, str]] = {
    "steerability loss ≥ 1 (nats)": ("lower", "in-context loss of an output once it has seen earlier samples"),
    "steerability floor (nats)": ("", "the lowest loss possible: the data's own entropy (a reference)"),
    "token calibration error": ("lower", "gap between predicted and actual token frequencies"),
    "valid share": ("higher", "share of samples that are valid answers to the prompt"),
    "yield": ("higher", "distinct valid answers per sample drawn"),
    "coverage": ("higher", "share of the valid answers the samples reach"),
    "uniqueness": ("higher", "share of samples unlike every other sample"),
    "Polis JS": ("lower", "distance of its vote distribution from the people's (Jensen-Shannon)"),
    "Polis JS, closest group": ("lower", "the same distance to the opinion group it matches best"),
    "Polis mode match": ("higher", "share of statements where its likeliest vote is the people's"),
    "Polis log10 mass on options": ("higher", "log10 of the probability it puts on the answer options at all"),
    "AmbiEnt JS": ("lower", "distance from annotators' label distribution on ambiguous items"),
    "AmbiEnt mode match": ("higher", "share of ambiguous items where its likeliest label is the annotators'"),
    "HaluEval accuracy": ("higher", "share of grounded questions answered correctly"),
    "faithfulness": ("higher", "share of answers supported by the given passage"),
    "constraints satisfied": ("higher", "share of checkable instructions followed"),
    "distinct-2": ("higher", "share of distinct word pairs in its generations"),
    "embedding diversity": ("higher", "mean distance between its generations' sentence embeddings"),
    "embedding diversity, per diffuse prompt": ("higher", "the same, among samples of one open prompt"),
    "implicit reward accuracy": ("higher", "share of held-out pairs where the tuned model prefers the chosen side"),
    "shaped reward (mean)": ("higher", "the shaped reward's mean score of its generations"),
    "win rate vs base": ("higher", "share of prompts where the shaped reward scores it above the base model"),
    "suppressed concepts that rose": ("lower", "suppressed concepts more present in its generations than the base's"),
    "prediction R² (families)": ("higher", "how much of the families' realised shifts the audit predicted"),
    "prediction Spearman ρ": ("higher", "rank agreement of predicted and realised shifts"),
    "sign agreement (families that moved)": ("higher", "share of moved families that moved the predicted way"),
    "families that moved": ("", "families whose prevalence changed beyond its interval"),
    "suppressed concepts that re-emerged": ("lower", "suppressed concepts held down at a checkpoint that rose later"),
}


def comparison_table(reports: list[dict]) -> pd.DataFrame:
    """Metrics as rows, evaluated models as columns."""
    rows = [headline(r) for r in reports]
    frame = pd.DataFrame(rows).set_index("model").T
    return frame.dropna(how="all")


def readable_table(reports: list[dict]) -> pd.DataFrame:
    """The comparison with, before the models, each metric's direction of better and meaning."""
    table = comparison_table(reports)
    guide = [METRIC_GUIDE[m] for m in table.index]
    better = ["higher is better" if b == "higher" else "lower is better" if b else "reference" for b, _ in guide]
    return pd.concat(
        [pd.DataFrame({"better": better, "what it measures": [m for _, m in guide]}, index=table.index), table], axis=1
    )


def summary_lines(report: dict) -> list[str]:
    lines = []
    for name, value in headline(report).items():
        if name == "model" or value is None:
            continue
        lines.append(f"{name}: {_fmt(value) if isinstance(value, float) else value}")
    prediction = report.get("prediction") or {}
    if prediction:
        lines.append(
            f"prediction: {prediction['families']} families, {prediction['moved']} moved beyond their interval; "
            f"fitted slope {_fmt(prediction.get('slope'))} realised per predicted unit"
        )
        for surprise in prediction.get("surprises", [])[:SURPRISES_SHOWN]:
            lines.append(
                f"  surprise: {surprise['concept_id']} {surprise['label']!r} {surprise['why']} "
                f"(predicted {surprise['predicted']:+.3f}, realised {surprise['shift']:+.3f})"
            )
        more = len(prediction.get("surprises", [])) - SURPRISES_SHOWN
        if more > 0:
            lines.append(f"  ... and {more} more surprises (shifts.parquet)")
    for concept_id in (report.get("reemergence") or {}).get("reemerged", []):
        lines.append(f"re-emerged: suppressed {concept_id} was held down at a checkpoint and rose later")
    runtime = report.get("runtime_seconds") or {}
    lines.append(
        "runtime: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in runtime.items())
        + f" (total {sum(runtime.values()):.0f} s)"
    )
    return lines


def export_json(reports: list[dict], prevalence: pd.DataFrame | None) -> str:
    """Every report in full (ids, run config, plan and audit, settings, summaries) and the
    prevalence comparison."""
    return json.dumps(
        {"reports": reports, "prevalence": [] if prevalence is None else prevalence.to_dict("records")},
        indent=1,
        default=str,
        ensure_ascii=False,
    )


def export_html(reports: list[dict], figures: dict, prevalence: pd.DataFrame | None) -> str:
    """One page: the comparison table, every chart (plotly.js inline, so it opens offline) and
    the identifiers of each evaluated model."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Spectrum evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>",
        "<h1>Spectrum evaluation</h1>",
        readable_table(reports).to_html(float_format=lambda v: f"{v:.3f}"),
    ]
    first = True
    for title, figure in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=first))
        first = False
    if prevalence is not None and len(prevalence):
        parts += ["<h2>Concept prevalence</h2>", prevalence.to_html(index=False, float_format=lambda v: f"{v:.3f}")]
    surprises = [{"model": r["target"], **s} for r in reports for s in (r.get("prediction") or {}).get("surprises", [])]
    if surprises:
        table = pd.DataFrame(surprises).to_html(index=False, float_format=lambda v: f"{v:+.3f}")
        parts += ["<h2>Surprises: families that moved against or without the audit's prediction</h2>", table]
    parts.append("<h2>Identifiers</h2>")
    for report in reports:
        ids = {
            k: report.get(k)
            for k in (
                "target",
                "model",
                "tune_job_id",
                "tune_artifact",
                "method",
                "plan_id",
                "plan_hash",
                "audit_job_id",
                "audit_artifact",
                "dataset_id",
                "job_id",
            )
        }
        parts.append(
            "<pre>"
            + html.escape(
                json.dumps(
                    {**ids, "run_config": report.get("run_config"), "evaluation": report.get("evaluation")},
                    indent=1,
                    default=str,
                )
            )
            + "</pre>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
