from spectrum_core.charts import length_histogram, length_scatter, response_lengths


def test_lengths_and_figures(hh_dataset):
    pairs = hh_dataset.pairs
    lengths = response_lengths(pairs)
    assert len(lengths) == len(pairs)
    first = pairs.iloc[0]
    assert lengths.iloc[0]["chosen_words"] == len(first["chosen"].split())
    histogram = length_histogram(pairs)
    assert [t.name.split()[0] for t in histogram.data] == ["chosen", "rejected"]
    scatter = length_scatter(pairs, unit="chars")
    share = (lengths["chosen_chars"] > lengths["rejected_chars"]).mean() * 100
    assert scatter.layout.title.text == f"chosen is longer in {share:.0f}% of pairs"


def test_training_curves_follow_the_progress_log():
    from spectrum_core.charts import training_curves

    records = [
        {"stage": "train", "done": 0, "total": 3, "started_at_step": 0},
        {"stage": "train", "done": 1, "total": 3, "loss": 0.69, "rewards_margins": 0.0},
        {"stage": "train", "done": 2, "total": 3, "loss": 0.61, "rewards_margins": 0.2},
        {"stage": "reset", "done": 1, "total": 1, "acceptance": 0.75},
    ]
    figure = training_curves(records, ("loss", "rewards_margins", "acceptance"))
    assert [list(trace.y) for trace in figure.data] == [[0.69, 0.61], [0.0, 0.2], [0.75]]
    assert figure.layout.xaxis3.title.text == "round" and figure.layout.xaxis.title.text == "step"
    assert len(training_curves(records, ("loss", "missing")).data) == 1
