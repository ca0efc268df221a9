"""Heads: the sparse selection says nothing on noise, one head per planted idea however often the
idea is repeated, heads pairwise below the |r| cap, length a head when it drives the choice, and
every concept attached to a head or to the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from spectrum_core.audit.heads import LENGTH_PROBE, MAX_HEAD_R, add_heads, choose_heads, head_candidates
from spectrum_core.audit.stats.length_control import length_terms
from spectrum_core.audit.stats.sparse_selection import STABILITY_SHARE, select_sparse

N_PAIRS = 500


def noise(rng: np.random.Generator, n_columns: int) -> np.ndarray:
    """Per-pair Δ that lean nowhere: sparse, half the pairs one way."""
    values = rng.exponential(1.0, (N_PAIRS, n_columns)) * (rng.random((N_PAIRS, n_columns)) < 0.4)
    return values * rng.choice([-1.0, 1.0], (N_PAIRS, n_columns))


def lengths(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(20, 400, N_PAIRS).astype(float), rng.integers(20, 400, N_PAIRS).astype(float)


def planted(rng: np.random.Generator, share: float = 0.8) -> np.ndarray:
    """A Δ that is positive (chosen has more) in ``share`` of the pairs where it differs."""
    size = rng.exponential(1.0, N_PAIRS) + 0.5
    return np.where(rng.random(N_PAIRS) < share, size, -size) * (rng.random(N_PAIRS) < 0.6)


def prompts() -> np.ndarray:
    return np.arange(N_PAIRS) // 2  # two pairs per prompt


def test_on_noise_nothing_is_stably_selected():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        selection = select_sparse(noise(rng, 60), length_terms(*lengths(rng)), prompts(), seed=seed)
        assert selection.multiplier <= 1.5, selection  # the one-SE rule stays at the sparse end
        assert selection.share.max(initial=0.0) < STABILITY_SHARE, selection.share


def test_a_planted_column_is_selected_in_every_resample_and_the_selection_is_seeded():
    rng = np.random.default_rng(1)
    delta = noise(rng, 40)
    delta[:, 7] = planted(rng)
    basis = length_terms(*lengths(rng))
    first = select_sparse(delta, basis, prompts(), seed=3)
    assert first.multiplier > 1.0 and first.share[7] >= 0.9
    assert np.delete(first.share, 7).max() < STABILITY_SHARE
    again = select_sparse(delta, basis, prompts(), seed=3)
    np.testing.assert_array_equal(first.selected, again.selected)


def candidates_table(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"concept_id": ids, "rank": np.arange(1, len(ids) + 1)})


def test_one_idea_repeated_gives_one_head_and_heads_stay_below_the_cap():
    rng = np.random.default_rng(2)
    delta = noise(rng, 30)
    idea = planted(rng)
    for column in (0, 4, 9):  # the same idea three times, with a little noise each
        delta[:, column] = idea + 0.2 * rng.normal(size=N_PAIRS) * (idea != 0)
    delta[:, 15] = planted(rng, share=0.85)  # a second, independent idea
    ids = [f"family:{j}" for j in range(30)]
    heads, summary = choose_heads(
        candidates_table(ids), sp.csc_matrix(delta), lengths(rng), prompts(), alpha=0.05, seed=0
    )
    sources = [ids[position] for position, _ in heads]
    assert len([s for s in sources if s in ("family:0", "family:4", "family:9")]) == 1, sources
    assert "family:15" in sources and summary.n_heads == len(heads) == 2, sources
    r = np.corrcoef(delta[:, [position for position, _ in heads]].T)
    assert np.abs(r[np.triu_indices(len(heads), 1)]).max() < MAX_HEAD_R


def test_length_is_a_head_when_the_longer_answer_wins():
    rng = np.random.default_rng(4)
    chosen_len, rejected_len = lengths(rng)
    longer = rng.random(N_PAIRS) < 0.75
    chosen_len, rejected_len = (
        np.where(longer, np.maximum(chosen_len, rejected_len), np.minimum(chosen_len, rejected_len)),
        np.where(longer, np.minimum(chosen_len, rejected_len), np.maximum(chosen_len, rejected_len)),
    )
    delta = noise(rng, 20)
    delta[:, 0] = chosen_len - rejected_len  # the length probe itself
    ids = [LENGTH_PROBE] + [f"family:{j}" for j in range(19)]
    heads, summary = choose_heads(
        candidates_table(ids), sp.csc_matrix(delta), (chosen_len, rejected_len), prompts(), alpha=0.05, seed=0
    )
    assert summary.length_head and summary.length_p < 1e-6
    assert [ids[position] for position, _ in heads] == [LENGTH_PROBE]


def test_every_concept_is_attached_to_its_nearest_head_or_the_rest():
    rng = np.random.default_rng(5)
    single = noise(rng, 12)
    idea = planted(rng)
    single[:, 2], single[:, 3] = idea, idea * 0.8 + 0.1 * rng.normal(size=N_PAIRS) * (idea != 0)
    chosen, rejected = np.maximum(single, 0), np.maximum(-single, 0)
    mode_data = {"token": (sp.csr_matrix(chosen), sp.csr_matrix(rejected))}
    concepts = pd.DataFrame(
        {
            "concept_id": [f"token:{j}" for j in range(12)],
            "kind": "sae",
            "mode": "token",
            "feature": np.arange(12),
            "rank": [3, 4, 1, 2, *range(5, 13)],
            "label": [f"t{j}" for j in range(12)],
            "share_chosen_more": 0.5,
            "q_value": 0.01,  # heads come from concepts significant on discovery
            # every concept in one family: a head copies its source's row but joins no family
            "family": "family:0",
            "family_weight": 1.0,
        }
    )
    discovery = np.ones(N_PAIRS, dtype=bool)
    table, (head_chosen, _), summary = add_heads(
        concepts, mode_data, discovery, lengths(rng), list(prompts()), alpha=0.05, seed=0
    )
    heads = table[table["kind"] == "head"]
    (source,) = heads["source"]  # one of the two copies of the idea, whichever is selected more
    assert source in ("token:2", "token:3") and list(heads["concept_id"]) == ["head:0"]
    assert heads.iloc[0]["members"] == [source] and head_chosen.shape == (N_PAIRS, 1)
    assert (heads["family"] == "").all() and heads["family_weight"].isna().all()
    rest = table[table["kind"] != "head"].set_index("concept_id")
    assert rest.loc["token:2", "head"] == rest.loc["token:3", "head"] == "head:0"
    assert (rest.drop(["token:2", "token:3"])["head"] == "").all()
    assert summary.n_attached == 2 and summary.n_rest == 10


def test_candidates_are_significant_on_discovery_and_length_is_always_offered():
    concepts = pd.DataFrame(
        {
            "concept_id": ["family:0", "family:1", "probe:refusal", LENGTH_PROBE, "token:0"],
            "kind": ["family", "family", "probe", "probe", "sae"],
            "rank": [1, 2, 3, 4, 1],
            "q_value": [0.01, 0.2, 0.03, 0.9, 0.001],
        }
    )
    offered = head_candidates(concepts, alpha=0.05)["concept_id"].tolist()
    assert offered == ["family:0", "probe:refusal", LENGTH_PROBE]  # families present: no single concepts
