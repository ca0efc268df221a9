"""Benchmark tasks, independent of any training or evaluation algorithm: the Spectrum task
families drawn from the bundled data and the Spectrum format that renders them for a chat model,
the HaluEval context-grounded questions, the model-free task scorers (faithfulness, answer match,
checkable constraints), and the fixed evaluation quarter of every bundled item that training never
sees. Tuning (Spectrum tuning, ReSet) and the metrics build on these; this package imports neither,
only the bundled data."""
