"""What a tuned model learned, measured against the base model on held-out material.

One module per measure (steerability, coverage, alignment, prevalence, preference, faithfulness,
diversity), ``evaluate`` runs them all as a cached job, ``results`` gathers evaluations for a
comparison, ``report`` and ``figures`` turn them into tables, charts and exports.
"""
