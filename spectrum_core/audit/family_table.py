"""Families as rows of the concept table: group the best-ranked concepts of every mode
(``families.py``), test each family's score like a single concept, and summarise how well the
families cover the significant concepts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .config import AuditConfig
from .families import (
    MAX_CANDIDATES,
    MIN_SIMILARITY,
    Families,
    effect_size,
    family_scores,
    find_families,
    representatives,
)
from .probes import nearest_probes
from .report import FamilySummary, JointModelSummary
from .stats.baselines import agreement_strength, length_baseline
from .stats.concept_statistics import concept_table, rank_concepts
from .stats.joint import joint_model

TOP_FAMILIES = 10  # the families whose members' share of the joint model's AUC gain is reported


def add_families(
    concepts: pd.DataFrame,
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    decoders: dict[str, np.ndarray],
    lengths: tuple[np.ndarray, np.ndarray],
    train_mask: np.ndarray,
    probe_delta: pd.DataFrame,
    config: AuditConfig,
    progress,
    discovery: np.ndarray | None = None,
    with_joint: bool = True,
) -> tuple[pd.DataFrame, tuple[sp.csr_matrix, sp.csr_matrix], FamilySummary]:
    """Group the best-ranked concepts of every mode into families (``families.py``), test each
    family's score like a single concept, and put the families (ranked) above the concepts. Members
    gain ``family`` (its id, "" for none) and ``family_weight`` (1 / their SD: the score's weight).
    Returns the table, the families' (chosen, rejected) scores over every pair and the summary;
    with ``discovery`` (a mask over pairs) families are found, tested and described on those only."""
    if progress:
        progress("families", 0, 1, unit="steps")
    rows = np.ones(next(iter(mode_data.values()))[0].shape[0], dtype=bool) if discovery is None else discovery
    offsets = _offsets(mode_data)
    column = np.array([offsets[m] + int(f) for m, f in zip(concepts["mode"], concepts["feature"])], dtype=np.int64)
    n_columns = sum(c.shape[1] for c, _ in mode_data.values())
    found, (family_chosen, family_rejected), described = _cluster_candidates(
        mode_data, decoders, offsets, column, n_columns, probe_delta, rows
    )
    member_effect = _effect_sizes(mode_data, rows)[column]

    table, joint = concept_table(
        "family", family_chosen, family_rejected, lengths, train_mask, config, discovery, with_joint
    )
    member_family = found.family[column]
    table = _with_descriptions(table, found, concepts, column, n_columns, described)
    # Ranked by the concepts' rule (length-controlled effect first): ranked by effect size alone, the
    # full HH audit's top families were all length in disguise and its refusal families fell to 27th.
    families = agreement_strength(rank_concepts(table, alpha=config.fdr_threshold), int(rows.sum()))

    concepts = concepts.assign(
        family=np.where(member_family >= 0, np.char.add("family:", member_family.astype(str)), ""),
        family_weight=np.where(member_family >= 0, found.weights[column], np.nan),
        effect_size=member_effect,
    )
    # Every pair's Δ (the joint models are scored on held-out ones), built only now and only for
    # them: held through the family statistics it added its size to the step's peak at 100k pairs.
    all_delta = _all_delta(mode_data) if with_joint else None
    summary = _family_summary(concepts, families, all_delta, column, lengths, train_mask, config, with_joint)
    summary.n_families, summary.n_clustered = found.n_families, int(len(found.clustered))
    summary.joint_model = JointModelSummary.from_fit(joint)
    if progress:
        progress("families", 1, 1, unit="steps")
    return pd.concat([families, concepts], ignore_index=True), (family_chosen, family_rejected), summary


def _cluster_candidates(
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    decoders: dict[str, np.ndarray],
    offsets: dict[str, int],
    column: np.ndarray,
    n_columns: int,
    probe_delta: pd.DataFrame,
    rows: np.ndarray,
):
    """The families of the best-ranked ``MAX_CANDIDATES`` concepts (``column``: each concept's
    stacked column): their membership over every column, their (chosen, rejected) scores over
    every pair and their descriptions on ``rows``. Only the candidates are clustered, so only their
    columns are stacked side by side (at 100k pairs every mode's columns side by side, chosen,
    rejected and Δ, grow with every latent)."""
    candidates = np.unique(column[:MAX_CANDIDATES])
    chosen, rejected, column_mode, decoder_columns = _candidate_columns(mode_data, decoders, offsets, candidates)
    delta = (chosen - rejected)[np.flatnonzero(rows)].tocsc()
    within = find_families(
        chosen,
        rejected,
        column_mode,
        np.searchsorted(candidates, column[:MAX_CANDIDATES]),
        decoder_columns,
        delta=delta,
        rows=rows,
    )
    family_chosen, family_rejected = family_scores(chosen, within), family_scores(rejected, within)
    del chosen, rejected
    described = _describe(within, delta, (family_chosen - family_rejected)[rows], probe_delta[rows])
    described["representative"] = candidates[described["representative"]]
    return _over_every_column(within, candidates, n_columns), (family_chosen, family_rejected), described


def _with_descriptions(
    table: pd.DataFrame, found, concepts: pd.DataFrame, column: np.ndarray, n_columns: int, described: dict
) -> pd.DataFrame:
    """The family statistics table with its ids, members (best ranked first) and descriptions."""
    concept_of_column = np.empty(n_columns, dtype=object)
    concept_of_column[column] = concepts["concept_id"].to_numpy()
    member_family = found.family[column]
    ranked_members = concepts["concept_id"].to_numpy()
    table["concept_id"] = [f"family:{f}" for f in range(found.n_families)]
    table["members"] = [list(ranked_members[member_family == f]) for f in range(found.n_families)]
    table["n_members"] = [len(m) for m in table["members"]]
    table["representative"] = concept_of_column[described["representative"]]
    table["mean_similarity"] = [found.mean_similarity(f) for f in range(found.n_families)]
    table["effect_size"] = described["effect_size"]
    table["probe_r"], table["nearest_probe"] = described["probe_r"], described["nearest_probe"]
    # Until the labeller names it, a family goes by its representative's name.
    table["label"] = table["representative"]
    return table


def _describe(found, delta: sp.csc_matrix, family_delta: sp.spmatrix, probe_delta: pd.DataFrame) -> dict:
    """What the family table says of each family beyond its statistics, from the described pairs'
    Δ: its representative member (column), effect size and nearest probe."""
    nearest, probe_r = nearest_probes(family_delta, probe_delta)  # this column order, as stored
    return {
        "representative": representatives(delta, found, family_delta),
        "effect_size": effect_size(family_delta),
        "nearest_probe": nearest,
        "probe_r": probe_r,
    }


def _all_delta(mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]]) -> sp.csc_matrix:
    """Every mode's Δ side by side, one mode at a time (no stacked chosen and rejected)."""
    return sp.hstack([(c - r).tocsc() for c, r in mode_data.values()], format="csc")


def _offsets(mode_data: dict) -> dict[str, int]:
    """Each mode's first column when every mode's columns are side by side (in ``mode_data`` order)."""
    modes = list(mode_data)
    return dict(zip(modes, np.cumsum([0] + [mode_data[m][0].shape[1] for m in modes[:-1]]).tolist()))


def _candidate_columns(mode_data: dict, decoders: dict[str, np.ndarray], offsets: dict[str, int], candidates):
    """The ``candidates`` (sorted columns of every mode side by side) alone: their chosen and
    rejected matrices, each one's mode, and each mode's (candidate positions, decoder directions)."""
    chosen, rejected, column_mode, decoder_columns = [], [], [], {}
    for mode, (c, r) in mode_data.items():
        start = offsets[mode]
        inside = np.flatnonzero((candidates >= start) & (candidates < start + c.shape[1]))
        local = candidates[inside] - start
        chosen.append(c[:, local])
        rejected.append(r[:, local])
        column_mode.append(np.full(len(local), mode, dtype=object))
        if mode in decoders:
            decoder_columns[mode] = (inside, np.asarray(decoders[mode])[local])
    return (
        sp.hstack(chosen, format="csr"),
        sp.hstack(rejected, format="csr"),
        np.concatenate(column_mode),
        decoder_columns,
    )


def _over_every_column(within: Families, candidates: np.ndarray, n_columns: int) -> Families:
    """Families found among the candidates, indexed by every mode's columns side by side."""
    family = np.full(n_columns, -1, dtype=np.int64)
    family[candidates] = within.family
    weights = np.zeros(n_columns, dtype=within.weights.dtype)
    weights[candidates] = within.weights
    return Families(family, weights, within.similarity, candidates[within.clustered])


def _effect_sizes(mode_data: dict, rows: np.ndarray) -> np.ndarray:
    """Every column's effect size on ``rows``, one mode at a time, in side-by-side order."""
    picked = np.flatnonzero(rows)
    return np.concatenate([effect_size((c - r)[picked]) for c, r in mode_data.values()])


def _family_summary(
    concepts: pd.DataFrame,
    families: pd.DataFrame,
    delta: sp.csc_matrix | None,
    column: np.ndarray,
    lengths: tuple[np.ndarray, np.ndarray],
    train_mask: np.ndarray,
    config: AuditConfig,
    with_joint: bool = True,
) -> FamilySummary:
    """How well the families summarise the concepts: how many families hold 90% of the
    significant concepts, and the share of the joint model's held-out AUC gain over a length-only
    model that the members of the top TOP_FAMILIES families keep."""
    significant = concepts["q_value"].to_numpy() < config.fdr_threshold
    counts = concepts.loc[significant & (concepts["family"] != ""), "family"].value_counts().to_numpy()
    needed = int(np.searchsorted(np.cumsum(counts), 0.9 * significant.sum() - 1e-9) + 1) if len(counts) else 0
    covered = counts.sum() >= 0.9 * significant.sum() - 1e-9
    top = set(families["concept_id"].head(TOP_FAMILIES))
    top_columns = column[concepts["family"].isin(top).to_numpy()]
    auc = {}
    for name, columns in (("all", column), ("top", top_columns)):
        fit: dict = {}
        if with_joint and delta is not None and len(columns):
            columns = np.sort(columns)
            every = len(columns) == delta.shape[1] and (columns == np.arange(delta.shape[1])).all()
            fit = joint_model(delta if every else delta[:, columns], *lengths, train_mask, config.seed)
        auc[name] = float(fit.get("auc_held_out", float("nan")))
    length_auc = length_baseline(*lengths, train_mask, config.seed).length_only_auc_held_out
    gain_all, gain_top = auc["all"] - length_auc, auc["top"] - length_auc
    return FamilySummary(
        min_similarity=MIN_SIMILARITY,
        n_families=0,  # set by the caller, which holds the families
        n_clustered=0,
        n_significant_concepts=int(significant.sum()),
        families_holding_90pct_of_significant=needed if covered and significant.any() else None,
        top_families=TOP_FAMILIES,
        auc_held_out_length_only=length_auc,
        auc_held_out_all_concepts=auc["all"],
        auc_held_out_top_families=auc["top"],
        auc_gain_retained_by_top_families=gain_top / gain_all if gain_all > 0 else float("nan"),
    )
