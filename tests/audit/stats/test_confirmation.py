"""Discover, then confirm: the split, the confirmation test, and that discovery never reads the
confirmation pairs (the audit's statistics, families and confirmation steps on synthetic pairs)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from spectrum_core.audit.config import AuditConfig
from spectrum_core.audit.pipeline import AuditState, _confirm, _families, _heads, _statistics
from spectrum_core.audit.probes import PROBES
from spectrum_core.audit.report import ActivationSummary, AuditReport
from spectrum_core.audit.stats.confirmation import (
    ConfirmationSummary,
    confirmation_summary,
    confirmed_first,
    discovery_split,
)

N_PAIRS, N_FEATURES, PLANTED = 600, 40, (3, 17)  # features 3 and 17 lean chosen in 80% of pairs


def test_the_split_holds_out_whole_prompts_at_the_share_asked():
    prompts = [f"prompt {i // 3}" for i in range(900)]  # three pairs per prompt
    discovery = discovery_split(prompts, 0.3, seed=5)
    by_prompt = pd.Series(discovery).groupby(prompts).nunique()
    assert (by_prompt == 1).all()  # every prompt's pairs on one side
    assert abs((~discovery).mean() - 0.3) < 0.01
    np.testing.assert_array_equal(discovery, discovery_split(prompts, 0.3, seed=5))
    assert not np.array_equal(discovery, discovery_split(prompts, 0.3, seed=6))
    assert discovery_split(prompts, 0.0, seed=5).all()


def synthetic_state(flip_labels: np.ndarray | None = None, seed: int = 0) -> AuditState:
    """An audit state after the activations, SAE and probes steps, on random sparse features with
    two planted ones; ``flip_labels`` swaps chosen and rejected in those pairs."""
    rng = np.random.default_rng(seed)

    def side(density: float, n_columns: int) -> np.ndarray:
        values = rng.exponential(1.0, (N_PAIRS, n_columns)) * (rng.random((N_PAIRS, n_columns)) < density)
        return values.astype(np.float32)

    chosen, rejected = side(0.3, N_FEATURES), side(0.3, N_FEATURES)
    for feature in PLANTED:
        leans = rng.random(N_PAIRS) < 0.8
        high, low = np.maximum(chosen[:, feature], rejected[:, feature]) + 1, np.zeros(N_PAIRS, np.float32)
        chosen[:, feature], rejected[:, feature] = np.where(leans, high, low), np.where(leans, low, high)
    probe_c, probe_r = side(0.5, len(PROBES)), side(0.5, len(PROBES))
    lengths = rng.integers(20, 200, 2 * N_PAIRS).astype(float)
    if flip_labels is not None:
        for c, r in ((chosen, rejected), (probe_c, probe_r)):
            c[flip_labels], r[flip_labels] = r[flip_labels].copy(), c[flip_labels].copy()
        pair_lengths = lengths.reshape(-1, 2)
        pair_lengths[flip_labels] = pair_lengths[flip_labels][:, ::-1]
        lengths = pair_lengths.ravel()
    prompts = [f"question {i // 2}" for i in range(N_PAIRS)]
    pairs = pd.DataFrame({"pair_id": [f"p{i}" for i in range(N_PAIRS)], "prompt": prompts, "split": "train"})
    config = AuditConfig(seed=0, sae_seeds=0, topics=0)
    state = AuditState(pairs, config, Path("unused"), Path("unused"))
    state.store = SimpleNamespace(response_lengths=lambda: lengths)
    state.discovery = discovery_split(prompts, config.confirmation_share, config.seed)
    state.train_mask = state.discovery.copy()
    state.mode_data = {
        "token": (sp.csr_matrix(chosen), sp.csr_matrix(rejected)),
        "probe": (sp.csr_matrix(probe_c), sp.csr_matrix(probe_r)),
    }
    state.decoders = {"token": rng.normal(size=(N_FEATURES, 8))}
    state.probe_delta = pd.DataFrame(probe_c - probe_r, columns=list(PROBES))
    state.report = AuditReport(
        config=config.identity(),
        model_path="",
        layer=0,
        hook_name="",
        n_pairs=N_PAIRS,
        n_train=state.n_discovery,
        n_held_out=N_PAIRS - state.n_discovery,
        activations=ActivationSummary(0, 0, 2 * N_PAIRS, 8, 0),
    )
    return state


def audited(state: AuditState) -> AuditState:
    for step in (_statistics, _families, _heads, _confirm):
        step(state)
    return state


DISCOVERY_COLUMNS = ["p_sign", "q_value", "coef", "share_chosen_more", "n_differ", "family", "members"]


def test_discovery_never_reads_the_confirmation_pairs():
    first = audited(synthetic_state())
    held_out = ~first.discovery
    second = audited(synthetic_state(flip_labels=held_out))  # only confirmation labels change
    a, b = (s.concepts.set_index("concept_id").sort_index() for s in (first, second))
    pd.testing.assert_frame_equal(a[DISCOVERY_COLUMNS], b[DISCOVERY_COLUMNS])
    assert not np.allclose(a["confirm_share_chosen_more"].fillna(0), b["confirm_share_chosen_more"].fillna(0))


def test_a_planted_concept_is_confirmed_and_a_sign_flipped_copy_confirms_nothing():
    state = audited(synthetic_state())
    concepts = state.concepts.set_index("concept_id")
    planted_families = {concepts.at[f"token:{f}", "family"] for f in PLANTED} - {""}
    assert planted_families and concepts.loc[sorted(planted_families), "confirmed"].all()
    assert concepts.loc[concepts["confirmed"], "kind"].isin(["head", "family", "probe"]).all()
    # Each planted family leads a head of its own, confirmed; the summary counts the heads.
    heads = concepts[concepts["kind"] == "head"]
    assert planted_families <= set(heads["source"]) and heads["confirmed"].all(), heads
    summary = state.report_so_far.confirmation
    assert isinstance(summary, ConfirmationSummary) and summary.n_confirmed == len(heads)
    assert summary.n_confirmation == int((~state.discovery).sum())
    # Confirmed first, in discovery order: the queue's head is confirmed.
    families = state.concepts[state.concepts["kind"] == "family"]
    assert families["confirmed"].iloc[: len(planted_families)].all()

    rng = np.random.default_rng(11)
    null = audited(synthetic_state(flip_labels=rng.random(N_PAIRS) < 0.5, seed=0))
    # With labels flipped at random the planted features lean nowhere: nothing is confirmed.
    assert not null.concepts["confirmed"].any(), null.report_so_far.confirmation


def test_the_sentence_says_when_the_confirmation_split_is_too_small():
    concepts = pd.DataFrame(
        {
            "concept_id": ["head:0", "head:1"],
            "kind": "head",
            "rank": [1, 2],
            "carried": True,
            "confirmed": False,
            "confirm_p": [0.2, 0.5],
            "share_chosen_more": [0.7, 0.6],
            "n_differ": [300, 200],
        }
    )
    small = confirmation_summary(concepts, n_discovery=600, n_confirmation=4, share=0.3, alpha=0.05)
    text = small.sentence()
    assert small.detectable_share is None and "too small to confirm anything" in text
    assert f"head:0, would need roughly {small.strongest_pairs_needed:,} confirmation pairs" in text
    assert small.strongest_pairs_needed is not None and small.strongest_pairs_needed > 4
    enough = confirmation_summary(concepts, n_discovery=600, n_confirmation=400, share=0.3, alpha=0.05)
    assert enough.sentence().startswith("0 of the 2 heads found on the 600 discovery pairs are confirmed")
    nothing = confirmation_summary(concepts.assign(carried=False), 600, 400, 0.3, 0.05)
    assert nothing.sentence().startswith("Nothing to confirm")


def test_confirmed_first_keeps_discovery_order_within_each_group():
    concepts = pd.DataFrame(
        {
            "concept_id": ["f0", "f1", "f2", "s0", "p0"],
            "kind": ["family", "family", "family", "sae", "probe"],
            "rank": [1, 2, 3, 1, 2],
            "confirmed": [False, True, False, False, True],
        }
    )
    ranked = confirmed_first(concepts)
    assert ranked["concept_id"].tolist() == ["f1", "f0", "f2", "p0", "s0"]
    assert ranked["rank"].tolist() == [1, 2, 3, 1, 2]


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_a_confirmation_share_outside_0_to_1_is_refused(share):
    with pytest.raises(ValueError, match="confirmation_share"):
        AuditConfig(confirmation_share=share)


def test_null_runs_are_seeded_and_confirm_next_to_nothing(tmp_path):
    from spectrum_core.audit.pipeline import _null

    state = audited(synthetic_state())
    state.out_dir = tmp_path
    state.config.null_runs = 6
    _null(state)
    first = state.report_so_far.null
    assert first is not None and first.runs == 6 and len(first.confirmed) == 6
    assert first.observed == state.report_so_far.confirmation.n_confirmed >= 2
    assert first.confirmed_mean <= 1.0  # flipped in a random half, the plants lean nowhere
    _null(state)
    assert state.report_so_far.null == first  # the same flips, the same counts
    assert "On shuffled preferences" in first.sentence() and f"here it confirms {first.observed}" in first.sentence()


def test_null_runs_hold_one_copy_of_the_matrices_and_restore_them_exactly(monkeypatch, tmp_path):
    """The null runs flip the state's matrices in place, and set the real families and heads
    aside on disk: while a run computes, the real pairs' arrays are freed (only their flipped
    copies exist); after the runs the state holds exactly what it held before, in the same
    order, nothing is left on disk, and a second call counts the same."""
    import weakref

    from spectrum_core.audit import pipeline

    state = audited(synthetic_state())
    state.config.null_runs = 3
    state.out_dir = tmp_path
    order = list(state.mode_data)
    assert order[-2:] == ["family", "head"]
    before = {mode: [side.copy() for side in sides] for mode, sides in state.mode_data.items()}
    real = {mode: weakref.ref(state.mode_data[mode][0].data) for mode in ("token", "family", "head")}
    alive: list[bool] = []
    statistics = pipeline._statistics

    def watched(run):
        alive.extend(ref() is not None for ref in real.values())
        statistics(run)

    monkeypatch.setattr(pipeline, "_statistics", watched)
    pipeline._null(state)
    assert alive == [False] * 9
    assert list(state.mode_data) == order and not list(tmp_path.iterdir())
    for mode, sides in state.mode_data.items():
        for got, want in zip(sides, before[mode]):
            assert got.dtype == want.dtype and got.shape == want.shape and (got != want).nnz == 0
    first = state.report_so_far.null
    pipeline._null(state)
    assert state.report_so_far.null == first


def test_flip_pairs_swaps_only_the_flipped_rows():
    from spectrum_core.audit.stats.null import flip_pairs

    chosen = sp.csr_matrix(np.array([[1.0, 0.0], [2.0, 3.0], [0.0, 4.0]]))
    rejected = sp.csr_matrix(np.array([[5.0, 6.0], [0.0, 0.0], [7.0, 0.0]]))
    c, r = flip_pairs(chosen, rejected, np.array([False, True, False]))
    np.testing.assert_array_equal(c.toarray(), [[1, 0], [0, 0], [0, 4]])
    np.testing.assert_array_equal(r.toarray(), [[5, 6], [2, 3], [7, 0]])


@pytest.mark.parametrize("chunk_nnz", [1, 7, 1 << 20])
def test_flip_pairs_gathers_the_same_rows_chunk_by_chunk(monkeypatch, chunk_nnz):
    """Written straight into the output chunk of rows by chunk: every chunk size gives the dense
    row swap, canonical and in the inputs' dtype (empty rows and an empty matrix included)."""
    from spectrum_core.audit.stats import null

    monkeypatch.setattr(null, "FLIP_CHUNK_NNZ", chunk_nnz)
    rng = np.random.default_rng(4)
    for n_pairs in (0, 1, 60):
        chosen, rejected = (
            sp.random(n_pairs, 30, density=d, format="csr", random_state=rng, dtype=np.float32) for d in (0.1, 0.3)
        )
        flip = rng.random(n_pairs) < 0.5
        c, r = null.flip_pairs(chosen, rejected, flip)
        np.testing.assert_array_equal(c.toarray(), np.where(flip[:, None], rejected.toarray(), chosen.toarray()))
        np.testing.assert_array_equal(r.toarray(), np.where(flip[:, None], chosen.toarray(), rejected.toarray()))
        assert c.dtype == np.float32 and c.has_canonical_format and r.has_canonical_format
