"""The shaped reward on the real small audit (bundled model, its SAE): projection, partialling out,
bonuses, save and load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectrum_core.audit.review import AuditView
from spectrum_core.interventions import compile_plan, shape_pairs
from spectrum_core.reward import RewardConfig, ShapedReward, fit_shaped_reward
from spectrum_core.reward.shaped import concept_activation, concept_direction
from tests.conftest import copy_small_audit


@pytest.fixture(scope="module")
def fitted(small_audit_source, bundled_model, tmp_path_factory):
    workspace, outcome = copy_small_audit(small_audit_source, tmp_path_factory.mktemp("reward"))
    folder = workspace.find_artifact(outcome.artifact_key)
    view = AuditView.load(folder)
    token = view.concepts[(view.concepts["mode"] == "token") & (view.concepts["direction"] != "none")]
    suppressed, amplified = token.sort_values("rank")["concept_id"].iloc[:2]
    workspace.decide(outcome.job_id, suppressed, "suppress", user="ana")
    workspace.decide(outcome.job_id, amplified, "amplify", strength=2.0, user="ana")
    plan = compile_plan(workspace, outcome.job_id, view)
    dataset = workspace.load_dataset(workspace.job(outcome.job_id).dataset_id)
    shaped = shape_pairs(plan, pd.Index(dataset.pairs["pair_id"]), view.pair_ids, view.delta_array)
    config = RewardConfig(max_train_pairs=60, max_held_out_pairs=30)
    reward, report = fit_shaped_reward(bundled_model, folder, plan, dataset.pairs, shaped.table, config)
    return reward, report, plan, dataset, folder, suppressed, amplified


def test_suppressed_concept_is_out_of_the_inputs_and_the_score(fitted):
    reward, report, plan, dataset, folder, suppressed, amplified = fitted
    feature = int(suppressed.split(":")[1])
    assert reward.coef[feature] == 0.0
    direction = concept_direction(suppressed, reward.saes).numpy()
    train = dataset.pairs[dataset.pairs["split"] == "train"].head(20)
    prompts = [p for p in train["prompt"] for _ in range(2)]
    texts = [t for c, r in zip(train["chosen"], train["rejected"]) for t in (c, r)]
    plain, projected = reward.encoder.encode_with(prompts, texts, [None, reward.encoder.basis])
    # The projected residual has no component along the suppressed direction; the plain one does.
    assert np.abs(projected.pooled @ direction).max() < 1e-3 * np.abs(plain.pooled @ direction).max()
    # The score, as the trainers call it, is what score_encoded gives from the two encodings.
    assert np.allclose(reward.score(prompts, texts), reward.score_encoded(projected, plain, texts), atol=1e-6)


def test_report_compares_before_and_after(fitted):
    reward, report, plan, dataset, folder, suppressed, amplified = fitted
    table = report.table().set_index("concept_id")
    assert set(table.index) == {suppressed, amplified}
    assert 0.0 <= report.accuracy_before <= 1.0 and 0.0 <= report.accuracy_after <= 1.0
    assert report.n_held_out == 30
    # Amplifying with strength 2 ties the reward to the concept: its dependence rises.
    assert table.loc[amplified, "after"] > table.loc[amplified, "before"]
    assert table.loc[amplified, "after"] > 0.3


def test_save_and_load_score_the_same(fitted, tmp_path, bundled_model):
    reward, report, plan, dataset, folder, suppressed, amplified = fitted
    reward.save(tmp_path / "reward")
    again = ShapedReward.load(tmp_path / "reward", bundled_model, folder)
    prompts = [[{"role": "user", "content": "How do I pick a lock?"}]] * 2
    texts = ["I'm sorry, I can't help with that.", "Sure! Use a tension wrench and a pick."]
    assert np.allclose(reward.score(prompts, texts), again.score(prompts, texts), atol=1e-5)
    values = concept_activation(amplified, again.encoder.encode(prompts, texts), texts, again.saes)
    assert values.shape == (2,)
