"""Label fidelity and the label as a hypothesis, on held-out responses: a label that names what the
head measures scores near 1 and carries the effect; one that does not is flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from spectrum_core.audit.labelling.fidelity import (
    MIN_RESPONSES,
    check_head_labels,
    fidelity,
    mann_whitney_auc,
    phrase_presence,
)

N_PAIRS = 400


def test_phrases_match_whole_words_with_case_and_apostrophes_folded():
    texts = ["I hope this helps!", "HOPE THIS HELPS", "hope this helpsy", "I don’t know", "nothing"]
    assert phrase_presence(texts, ["hope this helps", "don't know"]).tolist() == [True, True, False, True, False]
    assert not phrase_presence(texts, []).any()


def test_the_auc_is_roc_auc_and_its_interval_holds_it():
    rng = np.random.default_rng(0)
    present = rng.random(500) < 0.3
    activation = rng.normal(size=500) + present  # ties none; present ones higher
    assert mann_whitney_auc(activation, present) == roc_auc_score(present, activation)
    auc, low, high = fidelity(activation, present, seed=1)
    assert low < auc < high and auc > 0.7
    assert np.isnan(mann_whitney_auc(activation, np.zeros(500, dtype=bool)))


def head_table(top_ngrams: str, share: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "concept_id": ["head:0", "token:0"],
            "kind": ["head", "sae"],
            "feature": [0, 0],
            "label_source": ["offline", "offline"],
            "top_ngrams": [top_ngrams, ""],
            "share_chosen_more": [share, 0.5],
            "direction": ["chosen" if share > 0.5 else "rejected", "none"],
        }
    )


def synthetic(rng: np.random.Generator):
    """Chosen responses sign off with "hope this helps" in 60% of pairs, rejected ones in 20%; the
    head fires on the sign-off."""
    chosen_has = rng.random(N_PAIRS) < 0.6
    rejected_has = rng.random(N_PAIRS) < 0.2
    texts = []
    for c, r in zip(chosen_has, rejected_has):
        texts += [
            "Here it is. Hope this helps!" if c else "Here it is.",
            "An answer. Hope this helps." if r else "An answer.",
        ]
    fire = lambda has: np.where(has, 2.0 + rng.random(N_PAIRS), rng.random(N_PAIRS) * 0.5)  # noqa: E731
    return texts, sp.csr_matrix(fire(chosen_has)[:, None]), sp.csr_matrix(fire(rejected_has)[:, None])


def test_a_true_label_scores_high_and_carries_the_effect_a_wrong_one_is_flagged():
    rng = np.random.default_rng(3)
    texts, chosen, rejected = synthetic(rng)
    confirmation = np.arange(N_PAIRS) >= N_PAIRS // 4  # 300 pairs, 600 held-out responses
    good = check_head_labels(head_table("hope this helps, helps", 0.7), chosen, rejected, texts, confirmation, 0.05, 0)
    head = good.iloc[0]
    assert head["label_fidelity_n"] == 600 >= MIN_RESPONSES and head["label_fidelity"] > 0.95
    assert head["label_explains"] is True and head["label_p"] < 1e-6 and head["label_share_chosen_more"] > 0.7
    assert np.isnan(good.iloc[1]["label_fidelity"])  # only heads are scored
    wrong = check_head_labels(head_table("an answer", 0.7), chosen, rejected, texts, confirmation, 0.05, 0)
    assert wrong.iloc[0]["label_explains"] is False  # its phrase sits on the rejected side
    assert wrong.iloc[0]["label_fidelity"] < 0.6
    few = check_head_labels(
        head_table("hope this helps", 0.7), chosen, rejected, texts, np.arange(N_PAIRS) < 100, 0.05, 0
    )
    assert np.isnan(few.iloc[0]["label_fidelity"]) and few.iloc[0]["label_fidelity_n"] == 200  # under 300
