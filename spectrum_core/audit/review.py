"""Reading a finished audit for review: concepts, per-pair Δ, feature cards, probe correlations,
and token highlighting that is safe to put in a page (every token is HTML-escaped)."""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import AuditArtifact
from .report import AuditReport

# Concepts that stand for a weighted sum of others: a family of its members, a head of its source's.
COMPOSITE_PREFIXES = ("family:", "head:")


def is_composite(concept_id: str) -> bool:
    return str(concept_id).startswith(COMPOSITE_PREFIXES)


def describe_concept(row) -> str:
    """One sentence a researcher can check: direction, strength and how sure."""
    side = {"chosen": "Chosen", "rejected": "Rejected"}.get(row["direction"])
    if side is None:
        return f"{row['label']}: no direction"
    share = row["share_chosen_more"] if row["direction"] == "chosen" else 1 - row["share_chosen_more"]
    q = row["q_value"]
    q_text = "q < 1e-6" if q < 1e-6 else f"q = {q:.2g}"
    # ``direction`` is the length-aware test's; where the raw count leans the other way, it is
    # length that tips it, and the sentence says "for their length".
    for_length = " for their length" if share < 0.5 else ""
    text = (
        f"{side} responses have more of “{row['label']}”{for_length} ({q_text}; {share:.0%} of the "
        f"{int(row['n_differ'])} pairs where it differs; length-controlled coefficient "
        f"{row['coef']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}])"
    )
    if not bool(row.get("carried", False)):
        return text
    held = row["confirm_share_chosen_more"] if row["direction"] == "chosen" else 1 - row["confirm_share_chosen_more"]
    verdict = "confirmed" if bool(row.get("confirmed", False)) else "not confirmed"
    return (
        f"{text}; {verdict} on the held-out pairs ({held:.0%} of the {int(row['confirm_n_differ'])} "
        f"where it differs, q = {row['confirm_q']:.2g})"
    )


def label_check(row) -> str:
    """How well a head's label holds on held-out responses (labelling/fidelity.py), in words;
    empty when it was not scored."""
    parts = []
    fidelity = row.get("label_fidelity")
    if fidelity is not None and pd.notna(fidelity):
        parts.append(
            f"label fidelity {fidelity:.2f} [{row['label_fidelity_low']:.2f}, {row['label_fidelity_high']:.2f}] "
            f"on {int(row['label_fidelity_n']):,} held-out responses"
        )
    explains = row.get("label_explains")
    if explains is not None and not (isinstance(explains, float) and np.isnan(explains)):
        if bool(explains):
            parts.append(f"the label carries the effect (p = {row['label_p']:.2g} on the held-out pairs)")
        else:
            parts.append("the label does not explain it (its phrases do not predict the choice on the held-out pairs)")
    return "; ".join(parts)


# A label whose fidelity interval reaches down to this does not pick out the responses where the
# concept fires better than a coin (the AUC of chance): the card says so beside the label.
CHANCE_FIDELITY = 0.5


def label_fidelity(row, concepts: pd.DataFrame) -> tuple[str, bool]:
    """How well the label matches where the concept fires, in words, and whether it visibly does
    not (its fidelity interval reaches chance, or the label does not explain the effect). A
    family or probe stands in the queue through its head, whose label check it shares; a concept
    with none says its label was not checked on held-out responses."""
    checked = row
    if row.get("kind") != "head" and "source" in concepts.columns:
        heads = concepts[(concepts["kind"] == "head") & (concepts["source"] == row["concept_id"])]
        checked = heads.iloc[0] if len(heads) else row
    text = label_check(checked)
    if not text:
        return "label not checked on held-out responses (only the heads' labels are)", False
    low, explains = checked.get("label_fidelity_low"), checked.get("label_explains")
    poor = (low is not None and pd.notna(low) and low <= CHANCE_FIDELITY) or (
        explains is not None and not (isinstance(explains, float) and np.isnan(explains)) and not bool(explains)
    )
    return text, bool(poor)


def word_differences(text: str, other: str) -> tuple[list[str], list[float]]:
    """``text`` as words (each with the whitespace after it) and 1.0 for each word not matched in
    ``other`` (difflib's longest matching blocks over whole words), for shading what differs
    between the two responses of a pair where there are no token activations to shade."""
    words = re.findall(r"\S+\s*|\s+", text)
    theirs = re.findall(r"\S+\s*|\s+", other)
    matcher = difflib.SequenceMatcher(None, [w.strip() for w in words], [w.strip() for w in theirs], autojunk=False)
    differs = [1.0] * len(words)
    for block in matcher.get_matching_blocks():
        differs[block.a : block.a + block.size] = [0.0] * block.size
    return words, differs


@dataclass
class AuditView:
    folder: Path
    concepts: pd.DataFrame
    cards: pd.DataFrame
    pair_features: pd.DataFrame
    pair_ids: pd.Index
    report: AuditReport
    topics: pd.DataFrame = field(default_factory=pd.DataFrame)  # topic, label, n_pairs
    topic_leans: pd.DataFrame = field(default_factory=pd.DataFrame)  # per family and topic

    @classmethod
    def load(cls, folder: Path, tables: bool = True) -> AuditView:
        """The audit in ``folder``; ``tables=False`` reads its concepts and audited pairs only
        (what resolving a family's members needs), not the per-pair table, cards and topics."""
        artifact = AuditArtifact(Path(folder))
        return cls(
            folder=artifact.folder,
            concepts=artifact.concepts().set_index("concept_id", drop=False),
            cards=artifact.cards() if tables else pd.DataFrame(),
            pair_features=artifact.pair_features() if tables else pd.DataFrame(),
            pair_ids=pd.Index(artifact.audited_pairs()["pair_id"]),
            report=artifact.report,
            topics=artifact.topics() if tables else pd.DataFrame(),
            topic_leans=artifact.topic_leans() if tables else pd.DataFrame(),
        )

    @cached_property
    def _concept_rows(self) -> tuple[dict[str, tuple[int, int]], np.ndarray, np.ndarray]:
        """The long table grouped by concept once (a full-HH audit has ~1.5M rows, and filtering
        them by string per concept took 0.15 s): concept -> row range, plus pair positions and Δ
        in that order."""
        codes, names = pd.factorize(self.pair_features["concept_id"])
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        ranges = {name: (int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(names)}
        positions = self.pair_ids.get_indexer(self.pair_features["pair_id"])[order]
        return ranges, positions, self.pair_features["delta"].to_numpy()[order]

    def family_members(self, family_id: str) -> dict[str, float]:
        """A family's members and their weights (its score is the weighted sum of theirs); a
        head's are its source's: a family's members, or the source concept itself."""
        if family_id.startswith("head:"):
            source = self.head_source(family_id)
            return self.family_members(source) if source.startswith("family:") else {source: 1.0}
        if "family" not in self.concepts.columns:
            return {}
        rows = self.concepts[self.concepts["family"] == family_id]
        return dict(zip(rows["concept_id"], rows["family_weight"].astype(float)))

    def head_source(self, head_id: str) -> str:
        """The family, probe or concept a head stands for (its Δ is the source's)."""
        return str(self.concepts.at[head_id, "source"])

    def under_head(self, head_id: str) -> pd.DataFrame:
        """The families and probes attached to a head (nearest to it, |r| at least ATTACH_R)."""
        if "head" not in self.concepts.columns:
            return self.concepts.iloc[:0]
        rows = self.concepts[(self.concepts["head"] == head_id) & self.concepts["kind"].isin(["family", "probe"])]
        return rows.sort_values("rank", kind="stable")

    def delta_array(self, concept_id: str) -> np.ndarray:
        """Δ for every audited pair in ``pair_ids`` order (0 where neither side has the concept);
        a family's is the weighted sum of its members'."""
        if concept_id.startswith("family:"):
            parts = self.family_members(concept_id)
            return sum((w * self.delta_array(m) for m, w in parts.items()), np.zeros(len(self.pair_ids)))
        ranges, positions, values = self._concept_rows
        out = np.zeros(len(self.pair_ids), dtype=np.float64)
        start, end = ranges.get(concept_id, (0, 0))
        out[positions[start:end]] = values[start:end]
        return out

    def deltas(self, concept_id: str) -> pd.Series:
        """Δ for every audited pair (0 where neither side has the concept)."""
        return pd.Series(self.delta_array(concept_id), index=self.pair_ids, name="delta")

    def card(self, concept_id: str, role: str = "fires") -> pd.DataFrame:
        """The strongest examples (``role="silent"``: the contrast where it is silent, see
        tables.ROLES); a head shows its source's. Audits from before the silent contrast have
        only the strongest examples and no role column."""
        if concept_id.startswith("head:"):
            concept_id = self.head_source(concept_id)
        rows = self.cards[self.cards["concept_id"] == concept_id]
        if "role" in rows.columns:
            rows = rows[rows["role"] == role]
        elif role != "fires":
            rows = rows.iloc[:0]
        return rows.sort_values("rank")

    def probe_correlations(self, concept_id: str) -> pd.Series:
        """Pearson r of this concept's Δ with every probe's Δ, strongest first."""
        target = self.delta_array(concept_id)
        names = [c for c in self.concepts["concept_id"] if c.startswith("probe:")]
        matrix = pd.DataFrame({name: self.delta_array(name) for name in names}, index=self.pair_ids)
        result = {}
        for column in matrix.columns:
            values = matrix[column].to_numpy()
            if column == concept_id or values.std() == 0 or target.std() == 0:
                continue
            result[column.removeprefix("probe:")] = float(np.corrcoef(values, target)[0, 1])
        series = pd.Series(result, dtype=float)
        return series.reindex(series.abs().sort_values(ascending=False).index)


def verdict_badge(row, alpha: float) -> str:
    """A concept's or family's verdict in a few words: significant or not at the audit's FDR
    threshold on the discovery pairs, then whether the held-out confirmation pairs confirm it
    (when it was carried there)."""
    if not row["q_value"] < alpha:
        return f"not significant (q ≥ {alpha:g})"
    if bool(row.get("carried", False)):
        q = row.get("confirm_q")
        held = "confirmed" if bool(row.get("confirmed", False)) else "not confirmed"
        return f"significant · {held} on held-out pairs (q = {q:.2g})"
    return "significant on discovery · not carried to the held-out pairs"


def highlight_tokens(tokens: list[str], activations: list[float], rgb: tuple[int, int, int] = (42, 157, 143)) -> str:
    """Tokens as HTML spans shaded by activation. Each token is escaped, so text from a dataset
    can never become markup; whitespace is kept visible with pre-wrap."""
    top = max((a for a in activations), default=0.0) or 1.0
    spans = []
    for token, value in zip(tokens, activations):
        alpha = max(0.0, min(1.0, value / top))
        title = f' title="{value:.2f}"' if value > 0 else ""
        spans.append(
            f'<span style="background: rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.2f})"{title}>{html.escape(token)}</span>'
        )
    return '<div style="white-space: pre-wrap; font-family: monospace; line-height: 1.6">' + "".join(spans) + "</div>"
