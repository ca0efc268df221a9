"""Reading evaluations back: summary lines, the comparison table across evaluated models, and the
exported report (JSON and a self-contained HTML page)."""

from __future__ import annotations

import html
import json
import math
import numbers
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .. import constants as names

SURPRISES_SHOWN = 10  # in the summary lines; the artifact's shifts.parquet holds them all
# Digits of a number shown to a reader (tables, chart labels): enough to compare two models, few
# enough that a label is never cut.
SIGNIFICANT_DIGITS = 3
WHOLE_UP_TO = 1e6  # a whole number below this reads better in full (a count of 1234, not 1.23e+03)


def load_report(folder: Path) -> dict:
    return json.loads((Path(folder) / names.REPORT_FILE).read_text())


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def significant(value) -> str:
    """A number for a reader: 3 significant digits (0.000412, 2.94, 1.23e+04), whole numbers as
    they are, "–" for none. Fixed decimals would show a small value as 0.000."""
    if value is None or value is pd.NA:
        return "–"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return "–"
    if isinstance(value, numbers.Integral) or (number.is_integer() and abs(number) < WHOLE_UP_TO):
        return str(int(number))
    return f"{number:.{SIGNIFICANT_DIGITS}g}"


def _suppressed_that_rose(report: dict) -> int | None:
    prevalence = report.get("prevalence") or {}
    return len(prevalence["flagged"]) if prevalence.get("compared") else None


def _reemerged(report: dict) -> int | None:
    reemergence = report.get("reemergence")
    return len(reemergence["reemerged"]) if reemergence else None


# Where each headline metric lives in a report: the path to its section (an int picks from a list:
# the last faithfulness point is the final model) and its key there, or the function that counts
# it. An evaluation that measures a metric's uncertainty stores the interval beside the value, as
# ``<key>_low`` and ``<key>_high`` (the naming of the prevalence tables), and the charts draw it.
MetricSource = tuple[tuple[str | int, ...], str] | Callable[[dict], int | None]
METRIC_SOURCES: dict[str, MetricSource] = {
    "steerability loss ≥ 1 (nats)": (("steerability",), "loss_ge1"),
    "steerability floor (nats)": (("steerability",), "ideal_loss_ge1"),
    "token calibration error": (("steerability",), "calibration_error"),
    "valid share": (("coverage",), "valid_share"),
    "yield": (("coverage",), "yield"),
    "coverage": (("coverage",), "coverage"),
    "uniqueness": (("coverage",), "uniqueness"),
    "Polis JS": (("alignment", "polis"), "js"),
    "Polis JS, closest group": (("alignment", "polis"), "js_closest_group"),
    "Polis mode match": (("alignment", "polis"), "mode_match"),
    "Polis log10 mass on options": (("alignment", "polis"), "log10_mass"),
    "AmbiEnt JS": (("alignment", "ambient"), "js"),
    "AmbiEnt mode match": (("alignment", "ambient"), "mode_match"),
    "HaluEval accuracy": (("faithfulness", -1), "answer_accuracy"),
    "faithfulness": (("faithfulness", -1), "faithfulness"),
    "constraints satisfied": (("faithfulness", -1), "constraints_satisfied"),
    "distinct-2": (("diversity",), "distinct_2"),
    "embedding diversity": (("diversity",), "embedding_diversity"),
    "embedding diversity, per diffuse prompt": (("coverage",), "embedding_diversity"),
    "implicit reward accuracy": (("preference",), "accuracy"),
    "shaped reward (mean)": (("reward",), "tuned_mean"),
    "win rate vs base": (("reward",), "win_rate"),
    "suppressed concepts that rose": _suppressed_that_rose,
    "prediction R²": (("prediction",), "r2"),
    "prediction Spearman ρ": (("prediction",), "spearman"),
    "prediction sign agreement": (("prediction",), "sign_agreement"),
    "prediction R², length partialled out": (("prediction", "without_length"), "r2"),
    "prediction R² over the better baseline": (("prediction", "over_best_baseline"), "r2_difference"),
    "predicted concepts that moved": (("prediction",), "moved"),
    "suppressed concepts that re-emerged": _reemerged,
}


def _section(report: dict, path: tuple[str | int, ...]) -> dict:
    """The dict at ``path`` in ``report`` ({} where any step is missing or empty)."""
    node: object = report
    for step in path:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and node else {}
        else:
            node = node.get(step) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def headline(report: dict) -> dict:
    """The numbers a researcher compares first, flat (None where a metric does not apply)."""
    values: dict = {"model": report.get("target")}
    for name, source in METRIC_SOURCES.items():
        values[name] = source(report) if callable(source) else _section(report, source[0]).get(source[1])
    return values


def metric_interval(report: dict, name: str) -> tuple[float, float] | None:
    """The 95% interval the report carries for a headline metric (None where it carries none)."""
    source = METRIC_SOURCES.get(name)
    if source is None or callable(source):
        return None
    section, key = _section(report, source[0]), source[1]
    low, high = section.get(f"{key}_low"), section.get(f"{key}_high")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else None


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
    "prediction R²": (
        "higher",
        "share of the realised shifts' variance the audit's prediction explains (heads, a sample of "
        "non-significant families, decided concepts)",
    ),
    "prediction Spearman ρ": ("higher", "rank agreement of predicted and realised shifts"),
    "prediction sign agreement": ("higher", "share of predicted concepts that moved the predicted way, moved or not"),
    "prediction R², length partialled out": ("higher", "the same R² once length is taken out of both sides"),
    "prediction R² over the better baseline": (
        "higher",
        "the audit's R² less the better of two predictors without the SAE (length alone, a bag of words)",
    ),
    "predicted concepts that moved": ("", "predicted concepts whose prevalence changed beyond its interval"),
    "suppressed concepts that re-emerged": ("lower", "suppressed concepts held down at a checkpoint that rose later"),
}


def comparison_table(reports: list[dict]) -> pd.DataFrame:
    """Metrics as rows, evaluated models as columns."""
    rows = [headline(r) for r in reports]
    frame = pd.DataFrame(rows).set_index("model").T
    return frame.dropna(how="all")


def better_text(metric: str) -> str:
    """ "higher is better", "lower is better", or "reference" (a floor or a count)."""
    better = METRIC_GUIDE.get(metric, ("", ""))[0]
    return f"{better} is better" if better else "reference"


def readable_table(reports: list[dict]) -> pd.DataFrame:
    """The comparison with, before the models, each metric's direction of better and meaning."""
    table = comparison_table(reports)
    meaning = [METRIC_GUIDE[m][1] for m in table.index]
    better = [better_text(m) for m in table.index]
    return pd.concat([pd.DataFrame({"better": better, "what it measures": meaning}, index=table.index), table], axis=1)


def summary_lines(report: dict) -> list[str]:
    lines = []
    for name, value in headline(report).items():
        if name == "model" or value is None:
            continue
        lines.append(f"{name}: {_fmt(value) if isinstance(value, float) else value}")
    prediction = report.get("prediction") or {}
    if prediction:
        concepts = prediction.get("concepts", prediction.get("families"))  # "families" before metrics version 3
        lines.append(
            f"prediction: {concepts} concepts, {prediction['moved']} moved beyond their interval; "
            f"fitted slope {_fmt(prediction.get('slope'))} realised per predicted unit"
        )
        if prediction.get("control", "none") != "none":
            lines.append(f"  a control run ({prediction['control']}): its plan swapped labels to check the prediction")
        for name, figures in (prediction.get("baselines") or {}).items():
            lines.append(
                f"  baseline ({name}): R² {_fmt(figures.get('r2'))}, sign agreement {_fmt(figures.get('sign_agreement'))}"
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
        readable_table(reports).map(significant).to_html(),
    ]
    first = True
    for title, figure in figures.items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=first))
        first = False
    if prevalence is not None and len(prevalence):
        parts += ["<h2>Concept prevalence</h2>", prevalence.map(significant).to_html(index=False)]
    surprises = [{"model": r["target"], **s} for r in reports for s in (r.get("prediction") or {}).get("surprises", [])]
    if surprises:
        table = pd.DataFrame(surprises).to_html(index=False, float_format=lambda v: f"{v:+.3f}")
        parts += ["<h2>Surprises: concepts that moved against or without the audit's prediction</h2>", table]
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
