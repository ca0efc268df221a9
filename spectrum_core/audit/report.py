"""The audit's ``report.json`` as one typed record, written and read here only.

The audit's steps fill an :class:`AuditReport` as they go; ``write`` puts it on disk and ``read``
gives it back, so the CLI, the pages and later stages use its fields, never raw keys. A report
written by an older audit (without families, baselines or topics) reads with those parts empty.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import constants as names
from ..errors import SpectrumError
from .stats.baselines import LengthBaseline
from .stats.confirmation import ConfirmationSummary
from .stats.null import NullSummary
from .stats.power import PowerSummary


class ReportError(SpectrumError, ValueError):
    """A report.json that is not an audit report this version knows."""


@dataclass
class ActivationSummary:
    n_tokens_total: int  # prompt and response tokens the model read
    n_response_tokens: int  # of them, response tokens: what the SAE and the features see
    n_responses: int
    d_model: int
    tokens_per_batch: int  # as resolved (on a GPU: from its free memory)


@dataclass
class JointModelSummary:
    """The scalar results of one joint L1 model (``stats/joint.py``); NaN / None where it could
    not be fitted (one class in the training split)."""

    auc_held_out: float = math.nan
    auc_train: float = math.nan
    C: float = math.nan
    length_coef: float = math.nan
    n_selected: int = 0
    null_intercept: float | None = None  # the length-only model it is compared with
    null_length_coef: float | None = None
    null_converged: bool | None = None

    @classmethod
    def from_fit(cls, fit: dict[str, Any]) -> JointModelSummary:
        """From ``joint_model``'s result, leaving out its per-concept arrays."""
        return cls(**{f.name: fit[f.name] for f in dataclasses.fields(cls) if f.name in fit})


@dataclass
class FamilySummary:
    """How the concept families summarise the concepts (``family_table.py``)."""

    min_similarity: float  # members are at least this alike
    n_families: int
    n_clustered: int  # concepts that joined a family
    n_significant_concepts: int
    families_holding_90pct_of_significant: int | None  # None: no significant concept, or not reached
    top_families: int
    auc_held_out_length_only: float
    auc_held_out_all_concepts: float
    auc_held_out_top_families: float
    auc_gain_retained_by_top_families: float
    joint_model: JointModelSummary = field(default_factory=JointModelSummary)
    n_significant_families: int = 0

    def sentence(self) -> str:
        """One or two sentences for the CLI and the Audit page."""
        text = (
            f"{self.n_families:,} families from {self.n_clustered:,} clustered concepts (members alike at "
            f"a mean similarity of at least {self.min_similarity:g})."
        )
        needed, significant = self.families_holding_90pct_of_significant, self.n_significant_concepts
        if significant:
            text += (
                f" {needed} families hold 90% of the {significant:,} significant concepts."
                if needed
                else f" The families hold under 90% of the {significant:,} significant concepts."
            )
        retained = self.auc_gain_retained_by_top_families
        if retained is not None and not math.isnan(retained):
            text += (
                f" The top {self.top_families} families' members keep {retained:.0%} of the joint model's held-out "
                f"AUC gain over length alone ({self.auc_held_out_top_families:.3f} vs "
                f"{self.auc_held_out_all_concepts:.3f}; length alone {self.auc_held_out_length_only:.3f})."
            )
        return text


@dataclass
class HeadSummary:
    """How the heads, the review queue, were chosen (``heads.py``)."""

    n_heads: int = 0
    n_candidates: int = 0
    length_head: bool = False  # length predicts the preference and leads as a head
    length_p: float | None = None  # the length spline's likelihood ratio test on discovery
    multiplier: float = 1.0  # C / C_min by the one-SE rule; 1.0 = the sparse model selects nothing
    cv_deviance: list[float] = field(default_factory=list)
    cv_se: list[float] = field(default_factory=list)
    resamples: int = 0  # bootstrap resamples of prompts (stability selection)
    stability_share: float = 0.0  # a head is selected in at least this share of them
    max_head_r: float = 0.0  # heads' Δ correlate below this
    max_abs_r_between_heads: float | None = None
    n_attached: int = 0  # families and concepts under some head
    n_rest: int = 0  # ... and under none
    auc_held_out_heads: float | None = None  # heads + length, fitted on discovery, on confirmation
    auc_gain_retained: float | None = None  # its gain over length, as a share of all concepts' joint model's
    share_significant_jointly: float | None = None  # heads with p < 0.05 in one model with length (confirmation)

    def sentence(self) -> str:
        if not self.n_heads:
            return (
                f"No head: the sparse model of the preference on {self.n_candidates} families and probes, "
                f"length controlled, selects nothing stably on the discovery pairs, and length alone does not "
                f"predict it."
            )
        length = " (length among them)" if self.length_head else ""
        return (
            f"{self.n_heads} heads{length} from {self.n_candidates} families and probes: each selected in at "
            f"least {self.stability_share:.0%} of {self.resamples} prompt resamples by a sparse model with "
            f"length, no two alike (|r| < {self.max_head_r:g}); {self.n_attached:,} concepts sit under a head, "
            f"{self.n_rest:,} under none.{self._together()}"
        )

    def _together(self) -> str:
        if self.auc_held_out_heads is None or math.isnan(self.auc_held_out_heads):
            return ""
        retained = (
            f", {self.auc_gain_retained:.0%} of the gain over length that every concept together reaches"
            if self.auc_gain_retained is not None and not math.isnan(self.auc_gain_retained)
            else ""
        )
        jointly = (
            f"; {self.share_significant_jointly:.0%} of them significant in one model with length there"
            if self.share_significant_jointly is not None and not math.isnan(self.share_significant_jointly)
            else ""
        )
        return f" With length they reach a held-out AUC of {self.auc_held_out_heads:.3f}{retained}{jointly}."


@dataclass
class Baselines:
    length: LengthBaseline


@dataclass
class AuditReport:
    config: dict[str, Any]  # AuditConfig.identity(): every setting that changes the result
    model_path: str
    layer: int
    hook_name: str
    n_pairs: int
    n_train: int
    n_held_out: int
    activations: ActivationSummary
    # mode -> the SAE's quality (explained variance, L0, dead latents) and training settings, as
    # sae.train_sae / evaluate_sae report them (their keys differ between trained and loaded SAEs)
    sae: dict[str, dict[str, Any]] = field(default_factory=dict)
    joint_models: dict[str, JointModelSummary] = field(default_factory=dict)  # mode -> its joint model
    warnings: list[str] = field(default_factory=list)  # what went wrong without stopping the audit
    families: FamilySummary | None = None
    heads: HeadSummary | None = None
    confirmation: ConfirmationSummary | None = None  # None: no confirmation split (confirmation_share 0)
    null: NullSummary | None = None  # None: no null runs
    topics: list[dict[str, Any]] = field(default_factory=list)  # the prompt topics' table, one row each
    baselines: Baselines | None = None
    n_concepts: dict[str, int] = field(default_factory=dict)  # single concepts per mode (families apart)
    n_significant: dict[str, int] = field(default_factory=dict)  # of them, q < fdr_threshold
    fdr_threshold: float = 0.05
    power: PowerSummary | None = None
    verdict: str = ""  # the one-sentence reading of the counts and the power
    timings: dict[str, float] = field(default_factory=dict)  # step name -> seconds
    # step name -> the process's peak resident memory during it, GB (Linux only; empty elsewhere)
    peak_memory_gb: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.config["model"])

    @property
    def total_significant(self) -> int:
        return sum(self.n_significant.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, folder: Path) -> None:
        (Path(folder) / names.REPORT_FILE).write_text(json.dumps(self.to_dict(), indent=1, default=float))

    @classmethod
    def read(cls, folder: Path) -> AuditReport:
        path = Path(folder) / names.REPORT_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise ReportError(f"{path}: not an audit report this version can read ({exc})") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditReport:
        return _build(cls, data)


def _build(cls: type, data: dict[str, Any]) -> Any:
    """``cls`` from its ``asdict`` form, nested dataclasses (also as dict values) rebuilt. Keys the
    class does not know are refused, so a misspelt or newer field is an error, not lost."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls(**{name: _value(hints[name], value) for name, value in data.items()})


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_optional(hint) else [hint]
    target = options[0]
    if dataclasses.is_dataclass(target) and isinstance(value, dict):
        return _build(target, value)  # type: ignore[arg-type]
    if typing.get_origin(target) is dict:
        _, value_type = typing.get_args(target)
        if dataclasses.is_dataclass(value_type):
            return {k: _build(value_type, v) for k, v in value.items()}  # type: ignore[arg-type]
    return value


def _is_optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)
