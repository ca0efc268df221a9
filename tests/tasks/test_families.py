"""The Spectrum task families from the bundled data, and the evaluation quarter they keep out of training."""

from __future__ import annotations

from spectrum_core.tasks.families import FAMILIES, build_mixture, polis_description, polis_rows


def test_every_family_builds_from_the_bundled_data():
    records = [
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "weight": 1.0}
    ]
    tasks = build_mixture(FAMILIES, tasks_per_family=3, samples_per_task=5, seed=0, chat_records=records)
    assert {t.family for t in tasks} == set(FAMILIES)
    polis = next(t for t in tasks if t.family == "polis")
    assert {o for _, o in polis.samples} <= {"agree", "disagree", "pass"} and len(polis.samples) == 5
    ambient = next(t for t in tasks if t.family == "ambient")
    assert {o for _, o in ambient.samples} <= {"entailment", "neutral", "contradiction"}
    assert build_mixture(("coin",), 4, 6, seed=3)[0].samples == build_mixture(("coin",), 4, 6, seed=3)[0].samples
    # Every prompt of a family can be drawn (the open-ended ones without a valid set are skipped).
    diffuse = build_mixture(("diffuse",), 300, 2, seed=0)
    assert len(diffuse) == 300 and all(o.startswith("{") for t in diffuse for _, o in t.samples)


def test_the_evaluation_quarter_is_drawn_for_evaluation_only():
    held = {polis_description(r) for r in polis_rows("eval")}
    assert 0.2 < len(held) / (len(held) + len(polis_rows("train"))) < 0.3
    assert {t.description for t in build_mixture(("polis",), 50, 2, seed=0, split="eval")} <= held
    assert not {t.description for t in build_mixture(("polis",), 50, 2, seed=0)} & held
