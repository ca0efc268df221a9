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
