"""Benchmark: the audit statistics on a synthetic 100,000-pair × 16,384-feature sparse problem.

Chosen and rejected activations are each about 1 % dense with nonnegative values, plus planted
features: one that chosen responses carry far more often, two weaker ones, and one that simply
tracks response length. Prints the wall time of each stage run on its own (sign test,
length-controlled logits, joint L1 model), then of ``feature_statistics`` (everything together,
Δ computed once, the joint model in a second thread), peak RSS, and a Markdown row for docs/benchmarks.md.
Run: `.venv/bin/python bench/audit_statistics.py`.
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import numpy as np
import scipy.sparse as sp

N_PAIRS = 100_000
N_FEATURES = 16_384
DENSITY = 0.01
SEED = 0


def random_csr(rng: np.random.Generator, n_rows: int, n_cols: int, density: float) -> sp.csr_matrix:
    """Each cell nonzero with probability ``density`` (exponential values), built without sorting:
    gaps between nonzeros in row-major order are geometric."""
    cells = n_rows * n_cols
    expected = cells * density
    gaps = rng.geometric(density, size=int(expected + 10 * np.sqrt(expected) + 100))
    positions = np.cumsum(gaps, dtype=np.int64) - 1
    positions = positions[positions < cells]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(positions // n_cols, minlength=n_rows), out=indptr[1:])
    data = rng.exponential(1.0, size=positions.size).astype(np.float32)
    return sp.csr_matrix((data, (positions % n_cols).astype(np.int32), indptr.astype(np.int32)), shape=(n_rows, n_cols))


def planted_columns(
    rng: np.random.Generator,
    chosen_len: np.ndarray,
    rejected_len: np.ndarray,
) -> tuple[sp.csr_matrix, sp.csr_matrix, list[str]]:
    """Columns 0-3: strong chosen-side, weak chosen-side, weak rejected-side, length-tracking."""
    n = chosen_len.size
    columns_c, columns_r, names = [], [], []
    for name, p_chosen, p_rejected in (
        ("strong, chosen 30 % vs rejected 10 %", 0.30, 0.10),
        ("weak, chosen 3.0 % vs rejected 2.0 %", 0.030, 0.020),
        ("weak, chosen 2.0 % vs rejected 3.0 %", 0.020, 0.030),
    ):
        columns_c.append((rng.random(n) < p_chosen) * rng.exponential(1.0, n))
        columns_r.append((rng.random(n) < p_rejected) * rng.exponential(1.0, n))
        names.append(name)
    columns_c.append(chosen_len / 100.0)
    columns_r.append(rejected_len / 100.0)
    names.append("length: activation = length / 100")
    stack = lambda cols: sp.csr_matrix(np.column_stack(cols).astype(np.float32))  # noqa: E731
    return stack(columns_c), stack(columns_r), names


def timed(fn, repeat: int = 1) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    from spectrum_core.audit.stats.concept_statistics import feature_statistics, rank_concepts
    from spectrum_core.audit.stats.joint import joint_model
    from spectrum_core.audit.stats.length_logit import length_controlled_logit
    from spectrum_core.audit.stats.sign_test import sign_test

    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    chosen_len = np.round(rng.lognormal(5.3, 0.6, N_PAIRS)) + 1
    rejected_len = np.round(rng.lognormal(5.2, 0.6, N_PAIRS)) + 1
    planted_c, planted_r, names = planted_columns(rng, chosen_len, rejected_len)
    n_noise = N_FEATURES - planted_c.shape[1]
    chosen = sp.hstack([planted_c, random_csr(rng, N_PAIRS, n_noise, DENSITY)], format="csr")
    rejected = sp.hstack([planted_r, random_csr(rng, N_PAIRS, n_noise, DENSITY)], format="csr")
    train_mask = rng.random(N_PAIRS) < 0.8
    print(
        f"synthetic data: {N_PAIRS:,} pairs × {N_FEATURES:,} features, chosen nnz {chosen.nnz:,}, "
        f"rejected nnz {rejected.nnz:,} ({time.perf_counter() - started:.1f} s to build); "
        f"cores: {os.cpu_count()}; peak RSS so far {peak_rss_mib():,.0f} MiB"
    )
    rss_before = peak_rss_mib()

    totals, (table, summary) = timed(
        lambda: feature_statistics(chosen, rejected, chosen_len, rejected_len, train_mask, seed=SEED), repeat=3
    )
    rss_after = peak_rss_mib()

    delta_times, delta = timed(lambda: chosen - rejected)
    sign_times, _ = timed(lambda: sign_test(delta))
    logit_times, _ = timed(lambda: length_controlled_logit(delta, chosen_len, rejected_len, SEED))
    joint_times, _ = timed(lambda: joint_model(delta, chosen_len, rejected_len, train_mask, SEED))

    ranked = rank_concepts(table)
    print("\nplanted features:")
    for j, name in enumerate(names):
        row = ranked.loc[j]
        print(
            f"  {j} ({name}): rank {row['rank']}, q {row['q_value']:.2g}, direction "
            f"{row['direction']}, coef {row['coef']:+.3f} [{row['ci_low']:+.3f}, "
            f"{row['ci_high']:+.3f}], joint coef {row['joint_coef']:+.3f}, "
            f"AUC contribution {row['auc_contribution']:+.4f}"
        )
    noise = table.iloc[len(names) :]
    print(
        f"noise features with q < 0.05: {int((noise['q_value'] < 0.05).sum())} of {len(noise):,}; "
        f"logit converged for {int(table['converged'].sum()):,}"
    )
    print(
        "joint model: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
    )

    print("\nstage (each run on its own)            wall time")
    print(f"  Δ = chosen − rejected (sparse)        {delta_times[0]:.2f} s")
    print(f"  sign test                             {sign_times[0]:.2f} s")
    print(f"  length-controlled logits              {logit_times[0]:.2f} s")
    print(f"  joint L1 model (CV for C, fit, AUCs)  {joint_times[0]:.2f} s")
    print(f"feature_statistics, all together: {', '.join(f'{t:.2f} s' for t in totals)} (runs 1-{len(totals)})")
    print(f"peak RSS: {rss_after:,.0f} MiB ({rss_after - rss_before:+,.0f} MiB over the input data)")
    print("\n| measurement | result |\n|---|---|")
    print(f"| statistics, 100k pairs × 16k features | {statistics.median(totals):.1f} s |")


if __name__ == "__main__":
    main()
