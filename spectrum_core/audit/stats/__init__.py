"""Statistics that say which concepts separate chosen from rejected responses, pair by pair.

Everything works on the per-pair difference Δ = chosen − rejected (pairs × concepts), kept sparse:

- ``pairs``: the shared pieces: Δ as canonical sparse matrices, column blocks and moments, the
  seeded pair order every logistic model uses, AUC;
- ``sign_test``: the exact sign test per concept and the FDR / Bonferroni adjustment;
- ``length_logit``: the length-controlled logistic regression, all concepts at once;
- ``joint``: the joint L1 logistic model over all concepts plus length;
- ``concept_statistics``: one table row per concept from all of the above, and the ranking;
- ``robustness``: SAE-seed stability;
- ``baselines``: length alone, and each concept's agreement strength;
- ``power``: what a sample of this size can detect, and the one-sentence verdict.

Nothing is imported here: the report's readers (the pages) need only the small dataclasses, not
scipy's and scikit-learn's fitting code, so each module is imported by name.
"""
