"""Heads: the review queue, at most ``MAX_HEADS`` findings that do not repeat each other.

Families summarise the SAE's concepts, but a large audit still has hundreds of them, many saying
one thing twice (a plant split over three families, length in a dozen disguises). Heads are chosen
jointly, on the discovery pairs only:

1. Candidates: the best-ranked ``MAX_HEAD_CANDIDATES`` families and probes (single SAE concepts
   when the audit has no families).
2. Candidates whose Δ correlate at |r| ≥ ``MAX_HEAD_R`` are grouped (connected components), so
   any two heads, from different groups, correlate below that: two heads never say the same thing.
3. A sparse logistic model of the preference on the candidates with the length terms (the length
   difference and a spline of each side's whole log length, ``stats/length_control.py``) left
   unpenalised (``stats/sparse_selection.py``): strength by the one-standard-error rule
   (no signal: nothing selected), then stability selection over bootstrap resamples of prompts.
   A group is selected in a resample when any of its members is; a group selected in at least
   ``STABILITY_SHARE`` of the resamples gives a head, its most often selected member.
4. Length is a head of its own (the ``length_tokens`` probe, whole responses) when the length
   terms alone (the length difference and the spline) predict the preference (likelihood ratio
   test at the audit's threshold); the group that holds the length probe is then length's.

A head is a row of kind ``head`` in the concept table, with its source's statistics (its Δ is the
source's Δ), ``source``, ``members`` (what a decision on it acts on) and ``selection_share``;
every other row is attached to its nearest head (``head``, ``head_r``: |r| of Δ ≥
``ATTACH_R``) or to "the rest" (``head`` = "").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats as sps
from scipy.sparse.csgraph import connected_components

from .families import MIN_SIMILARITY, cross_correlation, delta_correlation
from .report import HeadSummary
from .stats.length_control import LENGTH_PROBE, length_lr_pvalue, length_terms
from .stats.pairs import randomised_order
from .stats.sparse_selection import STABILITY_RESAMPLES, STABILITY_SHARE, select_sparse

MAX_HEADS = 30  # WIMHF and HypotheSAEs hand a researcher 5 to 30 validated hypotheses
MAX_HEAD_CANDIDATES = 200  # the best-ranked families and probes; the weak tail has nothing to lead with
MAX_HEAD_R = 0.5  # two heads' per-pair Δ correlate below this (|r|)
ATTACH_R = MIN_SIMILARITY  # a concept belongs under a head as alike as family members are
HEAD_KIND = "head"
HEAD_COLUMNS = {"head": "", "head_r": np.nan}


def head_candidates(concepts: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The best-ranked families and probes significant on discovery (q < ``alpha``: a head the
    primary test does not back would lead the queue on the joint model's word alone), and the
    length probe wherever it ranks (length is a head by its own test: the length-aware test of
    length itself is void)."""
    kinds = ("family", "probe") if (concepts["kind"] == "family").any() else ("sae", "probe")
    rows = concepts[concepts["kind"].isin(kinds)].sort_values("rank", kind="stable")
    best = rows[rows["q_value"] < alpha].head(MAX_HEAD_CANDIDATES)
    length = rows[(rows["concept_id"] == LENGTH_PROBE) & ~rows.index.isin(best.index)]
    return pd.concat([best, length])


def column_delta(rows: pd.DataFrame, mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]]) -> sp.csc_matrix:
    """Δ (pairs × rows) of the given concept rows, in their order."""
    parts = []
    for mode, feature in zip(rows["mode"], rows["feature"]):
        chosen, rejected = mode_data[mode]
        parts.append((chosen[:, [int(feature)]] - rejected[:, [int(feature)]]).tocsc())
    n_pairs = next(iter(mode_data.values()))[0].shape[0]
    return sp.hstack(parts, format="csc") if parts else sp.csc_matrix((n_pairs, 0))


def _groups_of(correlation: np.ndarray) -> np.ndarray:
    adjacency = sp.csr_matrix(np.abs(correlation) >= MAX_HEAD_R)
    return connected_components(adjacency, directed=False)[1]


def choose_heads(
    candidates: pd.DataFrame,
    delta: sp.csc_matrix,
    lengths: tuple[np.ndarray, np.ndarray],
    prompts: np.ndarray,
    alpha: float,
    seed: int,
) -> tuple[list[tuple[int, float]], HeadSummary]:
    """The heads among ``candidates`` (positions into it, with their selection share), on pairs
    that are the rows of ``delta`` (the discovery pairs), their ``lengths`` and ``prompts``."""
    ids = candidates["concept_id"].to_numpy()
    basis = length_terms(*lengths)
    group = _groups_of(delta_correlation(delta)) if len(ids) else np.zeros(0, dtype=np.int64)
    length_p = length_lr_pvalue(*lengths, randomised_order(len(basis), seed))
    length_at = np.flatnonzero(ids == LENGTH_PROBE)
    length_head = length_p < alpha and len(length_at) > 0
    # The length probe is the length terms' own first column: it adds nothing beyond them.
    offered = ids != LENGTH_PROBE
    selection = select_sparse(delta[:, offered].toarray(), basis, prompts, seed)
    share = np.zeros(len(ids))
    selected = np.zeros((selection.resamples, len(ids)), dtype=bool)
    share[offered], selected[:, offered] = selection.share, selection.selected
    heads: list[tuple[int, float]] = []
    if length_head:
        heads.append((int(length_at[0]), float("nan")))  # chosen by its own test, not by resampling
    taken = {int(group[length_at[0]])} if length_head else set()
    by_group = pd.DataFrame({"group": group, "share": share, "position": np.arange(len(ids))})
    group_share = {
        g: float(selected[:, block["position"].to_numpy()].any(axis=1).mean()) if selection.resamples else 0.0
        for g, block in by_group.groupby("group")
    }
    for g in sorted(group_share, key=lambda g: (-group_share[g], by_group.loc[by_group["group"] == g].index[0])):
        if len(heads) >= MAX_HEADS or group_share[g] < STABILITY_SHARE or g in taken:
            continue
        block = by_group[by_group["group"] == g]
        best = block.sort_values(["share", "position"], ascending=[False, True], kind="stable").iloc[0]
        heads.append((int(best["position"]), group_share[g]))
    summary = HeadSummary(
        n_heads=len(heads),
        n_candidates=len(ids),
        length_head=bool(length_head),
        length_p=length_p,
        multiplier=selection.multiplier,
        cv_deviance=selection.cv_deviance,
        cv_se=selection.cv_se,
        resamples=selection.resamples or STABILITY_RESAMPLES,
        stability_share=STABILITY_SHARE,
        max_head_r=MAX_HEAD_R,
    )
    return heads, summary


def add_heads(
    concepts: pd.DataFrame,
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    discovery: np.ndarray,
    lengths: tuple[np.ndarray, np.ndarray],
    prompts: list,
    alpha: float,
    seed: int,
) -> tuple[pd.DataFrame, tuple[sp.csr_matrix, sp.csr_matrix], HeadSummary]:
    """Heads as the first rows of the concept table (see the module docstring), every other row
    attached to its nearest head; returns the table, the heads' (chosen, rejected) columns over
    every pair, and the summary."""
    candidates = head_candidates(concepts, alpha)
    codes = pd.factorize(pd.Series([str(p) for p in prompts]))[0]
    rows = np.flatnonzero(discovery)
    delta = column_delta(candidates, mode_data)
    chosen_len, rejected_len = lengths
    heads, summary = choose_heads(
        candidates, delta[rows], (chosen_len[rows], rejected_len[rows]), codes[rows], alpha, seed
    )
    sources = candidates.iloc[[position for position, _ in heads]]
    head_rows = _head_rows(sources, [share for _, share in heads], concepts)
    # The length head's evidence is its own test: the length-aware test of length itself is void.
    is_length = (head_rows["source"] == LENGTH_PROBE).to_numpy()
    head_rows.loc[is_length, ["p_value", "q_value"]] = summary.length_p
    head_chosen = _columns(sources, mode_data, side=0)
    head_rejected = _columns(sources, mode_data, side=1)
    concepts = _attach(concepts, mode_data, (head_chosen - head_rejected)[rows], head_rows, rows)
    if len(head_rows) > 1:
        r = delta_correlation((head_chosen - head_rejected)[rows])
        np.fill_diagonal(r, 0.0)
        summary.max_abs_r_between_heads = float(np.abs(r).max())
    summary.n_attached = int((concepts["head"] != "").sum())
    summary.n_rest = int(len(concepts) - summary.n_attached)
    table = pd.concat([head_rows.assign(**HEAD_COLUMNS), concepts], ignore_index=True)
    return table, (head_chosen, head_rejected), summary


def queue_quality(
    head_delta: sp.spmatrix,
    sources: list[str],
    lengths: tuple[np.ndarray, np.ndarray],
    discovery: np.ndarray,
    seed: int,
) -> tuple[float, float]:
    """How much the heads say together, with length: the held-out AUC of one logistic model of the
    choice on the heads' Δ and the length terms, fitted on the discovery pairs and scored on the
    confirmation pairs; and the share of heads that the same model, refitted on the confirmation
    pairs, needs (likelihood ratio test of dropping each, p < 0.05: finite where a Wald test is
    not, for heads that nearly separate the pairs). The length head is the length terms themselves."""
    from .stats.length_control import fit_or_ridge, length_design
    from .stats.pairs import auc_score

    keep = [i for i, source in enumerate(sources) if source != LENGTH_PROBE]
    if not keep or discovery.all() or not discovery.any():
        return float("nan"), float("nan")
    signs = randomised_order(head_delta.shape[0], seed)
    delta = np.asarray(sp.csc_matrix(head_delta)[:, keep].todense())
    sd = delta[discovery].std(axis=0)
    x = signs[:, None] * np.divide(delta, sd, out=np.zeros_like(delta), where=sd > 0)
    design = np.column_stack([length_design(*lengths, signs), x])
    y, held = signs > 0, ~discovery
    auc = auc_score(y[held], design[held] @ fit_or_ridge(y[discovery], design[discovery])[0])

    def loglik(columns: np.ndarray) -> float:
        eta = design[held][:, columns] @ fit_or_ridge(y[held], design[held][:, columns])[0]
        return float(np.sum(y[held] * eta - np.logaddexp(0.0, eta)))

    everything = np.arange(design.shape[1])
    full = loglik(everything)
    first = design.shape[1] - len(keep)
    p = [sps.chi2.sf(max(0.0, 2.0 * (full - loglik(np.delete(everything, first + k)))), df=1) for k in range(len(keep))]
    return float(auc), float(np.mean(np.array(p) < 0.05))


def _head_rows(sources: pd.DataFrame, shares: list[float], concepts: pd.DataFrame) -> pd.DataFrame:
    rows = sources.copy().reset_index(drop=True)
    rows["source"] = rows["concept_id"]
    rows["members"] = [
        list(members) if kind == "family" else [source]
        for kind, members, source in zip(rows["kind"], rows.get("members", [None] * len(rows)), rows["source"])
    ]
    rows["n_members"] = [len(m) for m in rows["members"]]
    rows["concept_id"] = [f"head:{i}" for i in range(len(rows))]
    rows["kind"], rows["mode"], rows["feature"] = HEAD_KIND, HEAD_KIND, np.arange(len(rows))
    rows["selection_share"] = shares
    rows["rank"] = np.arange(1, len(rows) + 1)
    # A head is nobody's member: a source that belongs to a family must not make its head one too
    # (the family's score, and every part list built from it, would then count the source twice).
    if "family" in rows:
        rows["family"], rows["family_weight"] = "", np.nan
    return rows.reindex(
        columns=list(dict.fromkeys([*concepts.columns, "source", "members", "n_members", "selection_share"]))
    )


def _columns(sources: pd.DataFrame, mode_data, side: int) -> sp.csr_matrix:
    n_pairs = next(iter(mode_data.values()))[0].shape[0]
    parts = [mode_data[m][side][:, [int(f)]] for m, f in zip(sources["mode"], sources["feature"])]
    return sp.hstack(parts, format="csr") if parts else sp.csr_matrix((n_pairs, 0))


def _attach(
    concepts: pd.DataFrame, mode_data, head_delta: sp.spmatrix, head_rows: pd.DataFrame, rows: np.ndarray
) -> pd.DataFrame:
    """``head`` and ``head_r`` for every row: the head whose Δ correlates most (|r|, on the
    discovery pairs) with the row's, when at least ATTACH_R."""
    head = np.full(len(concepts), "", dtype=object)
    head_r = np.full(len(concepts), np.nan)
    if len(head_rows):
        ids = head_rows["concept_id"].to_numpy()
        for mode, (chosen, rejected) in mode_data.items():
            at = np.flatnonzero(concepts["mode"].to_numpy() == mode)
            if not len(at):
                continue
            features = concepts["feature"].to_numpy(dtype=np.int64)[at]
            r = cross_correlation((chosen - rejected)[rows][:, features], head_delta)
            best = np.argmax(np.abs(r), axis=1)
            strongest = r[np.arange(len(at)), best]
            near = np.abs(strongest) >= ATTACH_R
            head[at[near]] = ids[best[near]]
            head_r[at] = strongest
    return concepts.assign(head=head, head_r=head_r)


# What a head takes from its source once the labeller has run: its name and the evidence for it.
LABEL_FIELDS = (
    "label",
    "description",
    "label_source",
    "top_ngrams",
    "top_tokens",
    "snippets",
    "llm_fidelity",
    "detection",
    "detection_low",
    "detection_high",
)


def copy_from_sources(concepts: pd.DataFrame, fields: tuple[str, ...] = LABEL_FIELDS) -> pd.DataFrame:
    """Each head given its source's ``fields``: by default its name and the evidence for it (the
    labeller names families, probes and concepts); the SAE-seed check's column after that step."""
    is_head = (concepts["kind"] == HEAD_KIND).to_numpy()
    if not is_head.any():
        return concepts
    concepts = concepts.copy()
    by_id = concepts.set_index("concept_id")
    sources = concepts.loc[is_head, "source"].to_numpy()
    for name in fields:
        if name in concepts.columns:
            concepts.loc[is_head, name] = pd.Series(list(by_id.loc[sources, name]), index=concepts.index[is_head])
    return concepts
