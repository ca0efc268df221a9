"""The Results page's charts, on hand-made reports and prevalence tables: one panel per metric with
every model's bar side by side, error bars exactly where a report carries an interval, concept
prevalence as shares (never negative) and changes from the base, the export's figures the page's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spectrum_core.metrics.figures import METRIC_GROUPS, all_figures, metric_bars, prevalence_figure
from spectrum_core.metrics.prevalence import ABOVE_BASE_MEDIAN, ABOVE_ZERO, Generations, compare_prevalence
from spectrum_core.metrics.report import METRIC_GUIDE, better_text, headline, metric_interval, significant
from spectrum_core.reward.encoder import EncodedResponses
from spectrum_core.reward.shaped import DIFFERENCE_SAE

TUNED = "run 2 (dpo)"


def _report(target: str, scale: float) -> dict:
    """A report with every grouped metric, values differing by ``scale`` between models."""
    return {
        "target": target,
        "steerability": {"loss_ge1": 2.94 * scale, "calibration_error": 0.0412 * scale},
        "coverage": {"valid_share": 0.5 * scale, "coverage": 0.2, "uniqueness": 0.3, "embedding_diversity": 0.4},
        "alignment": {
            "polis": {"js": 0.28 * scale, "js_closest_group": 0.14, "mode_match": 0.5},
            "ambient": {"js": 0.31, "mode_match": 0.25},
        },
        "faithfulness": [
            {"checkpoint": "final", "answer_accuracy": 0.5, "faithfulness": 0.6, "constraints_satisfied": 0.7 * scale}
        ],
        "diversity": {"distinct_2": 0.8, "embedding_diversity": 0.35},
        "preference": {"accuracy": 0.75},
        "reward": {"win_rate": 0.6},
    }


def _panels(figure) -> dict[str, list]:
    """Traces per panel, by the panel's x axis ("x", "x2", ...)."""
    panels: dict[str, list] = {}
    for trace in figure.data:
        panels.setdefault(trace.xaxis, []).append(trace)
    return panels


def test_every_group_has_one_panel_per_metric_with_both_models_side_by_side():
    reports = [_report("base", 1.0), _report(TUNED, 1.1)]
    for title, metrics in METRIC_GROUPS.items():
        figure = metric_bars(reports, metrics, title)
        titles = [a.text for a in figure.layout.annotations]
        assert len(titles) == len(metrics), title
        for metric, text in zip(metrics, titles):
            # the whole name (wrapped, never cut) and which way is better
            assert text.split("<br><span")[0].replace("<br>", " ") == metric
            assert better_text(metric) in text and METRIC_GUIDE[metric][0] in ("higher", "lower")
        assert figure.layout.barmode == "group"
        panels = _panels(figure)
        assert len(panels) == len(metrics)
        for metric, traces in zip(metrics, panels.values()):
            assert len({t.yaxis for t in traces}) == 1  # one axis of its own per panel
            # base and tuned: one bar each, at their own x (side by side, never on top of each other)
            assert [t.name for t in traces] == ["base", TUNED]
            assert [t.x[0] for t in traces] == ["base", TUNED]
            assert all(t.visible is not False and t.y[0] > 0 for t in traces)
            expected = [headline(r)[metric] for r in reports]
            assert [t.y[0] for t in traces] == pytest.approx(expected)
            assert [t.text[0] for t in traces] == [significant(v) for v in expected]


def test_a_loss_and_a_calibration_error_each_get_their_own_scale():
    figure = metric_bars([_report("base", 1.0), _report(TUNED, 1.1)], METRIC_GROUPS["Steerability"])
    loss_axis, calibration_axis = figure.layout.yaxis, figure.layout.yaxis2
    # each axis reaches just past its own tallest bar (room for the label), not the other's
    assert 2.94 * 1.1 < loss_axis.range[1] < 4
    assert 0.0412 * 1.1 < calibration_axis.range[1] < 0.1
    assert [t.text[0] for t in figure.data] == ["2.94", "3.23", "0.0412", "0.0453"]


def test_error_bars_exactly_where_the_report_carries_an_interval():
    base, tuned = _report("base", 1.0), _report(TUNED, 1.1)
    base["steerability"].update(loss_ge1_low=2.5, loss_ge1_high=3.2)
    tuned["steerability"].update(calibration_error_low=float("nan"), calibration_error_high=0.05)  # not one
    tuned["alignment"]["polis"].update(js_low=0.2, js_high=0.4)
    assert metric_interval(base, "steerability loss ≥ 1 (nats)") == (2.5, 3.2)
    assert metric_interval(tuned, "token calibration error") is None
    assert metric_interval(base, "suppressed concepts that rose") is None  # a count has no interval
    with_bars = set()
    for metrics in METRIC_GROUPS.values():
        for trace in metric_bars([base, tuned], metrics).data:
            if trace.error_y.array is not None:
                with_bars.add((trace.name, trace.hovertext[0].split("<br>")[1].split(":")[0]))
                low, high = trace.y[0] - trace.error_y.arrayminus[0], trace.y[0] + trace.error_y.array[0]
                assert trace.error_y.symmetric is False and low < trace.y[0] < high
    assert with_bars == {("base", "steerability loss ≥ 1 (nats)"), (TUNED, "Polis JS")}


def test_a_metric_no_model_has_gets_no_panel_and_a_missing_model_no_bar():
    base = _report("base", 1.0)
    del base["preference"], base["reward"]  # the base model has neither
    figure = metric_bars([base, _report(TUNED, 1.1)], METRIC_GROUPS["Preference and reward"])
    assert [t.name for t in figure.data] == [TUNED, TUNED] and figure.data[0].showlegend
    only_base = metric_bars([base], METRIC_GROUPS["Preference and reward"])
    assert not only_base.data and not only_base.layout.annotations


def test_significant_digits():
    assert [significant(v) for v in (0.000412, 2.9e-05, 2.944, 12345.6, 7, 3.0, None, float("nan"))] == [
        "0.000412",
        "2.9e-05",
        "2.94",
        "1.23e+04",
        "7",
        "3",
        "–",
        "–",
    ]


class _DifferenceSAE:
    """A difference-mode SAE reduced to what prevalence reads: one decoder direction."""

    W_dec = torch.tensor([[1.0, 0.0, 0.0, 0.0]])


def _generations(feature: np.ndarray, component: np.ndarray) -> Generations:
    """Responses whose token feature 0 is ``feature`` and whose pooled residual's component along
    the difference direction is ``component``."""
    n = len(feature)
    pooled = np.c_[component, np.zeros((n, 3))]
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(n)]
    encoded = EncodedResponses(
        features=sp.csr_matrix(np.c_[feature, np.zeros(n)]), pooled=pooled, lengths=np.full(n, 5)
    )
    return Generations(prompts, ["plain answer."] * n, encoded)


@pytest.fixture
def prevalence_table():
    rng = np.random.default_rng(0)
    base = _generations(np.r_[np.zeros(15), np.ones(5)], rng.normal(-5.5, 0.3, 20))
    tuned = _generations(np.r_[np.ones(15), np.zeros(5)] * 2.0, rng.normal(-5.9, 0.3, 20))
    concepts = [
        {
            "concept_id": "token:0",
            "label": "apologises before answering a question at some length",
            "action": "suppress",
        },
        {"concept_id": "difference:0", "label": "formal <b>register</b>", "action": "amplify"},
    ]
    return compare_prevalence(base, tuned, concepts, {DIFFERENCE_SAE: _DifferenceSAE()}).set_index(
        "concept_id", drop=False
    )


def test_prevalence_shows_shares_and_changes_never_a_signed_mean(prevalence_table):
    table = prevalence_table
    # why the old chart went negative: a direction's value is a signed, uncentred projection
    assert table.loc["difference:0", "base_mean"] < -5 and table.loc["difference:0", "tuned_mean"] < -5
    assert table["present_when"].tolist() == [ABOVE_ZERO, ABOVE_BASE_MEDIAN]
    figure = prevalence_figure({TUNED: table})
    shares = [t for t in figure.data if t.xaxis == "x"]
    changes = [t for t in figure.data if t.xaxis == "x2"]
    assert [t.name for t in shares] == ["base", TUNED] and [t.name for t in changes] == [TUNED]
    for trace in shares:  # a share: between 0 and 1, its interval too
        low = np.asarray(trace.x) - np.asarray(trace.error_x.arrayminus)
        high = np.asarray(trace.x) + np.asarray(trace.error_x.array)
        assert (low >= 0).all() and (high <= 1).all()
    assert list(shares[0].x) == pytest.approx([0.25, table.loc["difference:0", "base_rate"]])
    assert list(shares[1].x) == pytest.approx([0.75, table.loc["difference:0", "tuned_rate"]])
    assert list(figure.layout.xaxis.range) == [0, 1]
    # the change may be negative, and the chart says what its sign means
    assert list(changes[0].x) == pytest.approx(table["shift"].tolist()) and changes[0].x[1] < 0
    assert "< 0: less than base" in figure.layout.xaxis2.title.text
    assert changes[0].marker.color[0] == "#d62728"  # the suppressed concept rose: flagged red
    names = list(shares[0].y)
    assert names[0].endswith("▲</span>") and "†" not in names[0]  # above 0 means active
    assert names[1].endswith(" †") and "&lt;b&gt;" in names[1]  # above the base median; label as text
    assert "†" in figure.layout.title.subtitle.text and "below 0" in figure.layout.title.subtitle.text


def test_prevalence_of_the_base_alone_and_the_export_draws_what_the_page_draws(prevalence_table):
    base_only = compare_prevalence(
        _generations(np.r_[np.zeros(15), np.ones(5)], np.zeros(20)),
        None,
        [{"concept_id": "token:0", "label": "apology", "action": "suppress"}],
        saes={},
    )
    figure = prevalence_figure({"base": base_only})
    assert [t.name for t in figure.data] == ["base"] and list(figure.data[0].x) == pytest.approx([0.25])
    assert len(figure.layout.annotations) == 1 and "†" not in figure.layout.title.subtitle.text
    reports = [_report("base", 1.0), _report(TUNED, 1.1)]
    exported = all_figures(reports, {TUNED: prevalence_table})
    assert exported["Concept prevalence"].to_json() == prevalence_figure({TUNED: prevalence_table}).to_json()
    assert (
        exported["Steerability"].to_json()
        == metric_bars(reports, METRIC_GROUPS["Steerability"], "Steerability").to_json()
    )
    base_export = all_figures(reports[:1], {}, base_prevalence=base_only)
    assert base_export["Concept prevalence (base model)"].to_json() == figure.to_json()
