"""How long an audit will take here, from how long the last one took on this workspace's machine:
the whole audit before it starts (the Audit page), and the steps still to come while one runs
(the job panel), corrected by how this run's finished steps compare with that audit's."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..progress import JobEstimate
from .report import AuditReport

# Settings whose difference leaves the measured audit as good a guide: the pairs are scaled for and
# the seed changes no amount of work. Any other setting that differs (modes, the seed check, null
# runs, topics) may add or drop whole steps, and the estimate's basis names it.
_NOT_SCALED = ("max_pairs", "seed")


@dataclass(frozen=True)
class MeasuredRate:
    """An earlier audit's whole time per pair, and which audit it comes from; ``timings`` are its
    seconds per step in run order, ``settings`` its configuration."""

    seconds_per_pair: float
    n_pairs: int
    minutes: float
    job_id: int
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def estimate_minutes(self, n_pairs: int) -> float:
        """Time scaled by pairs. A rough figure: the SAE stages grow more slowly than the pairs, so
        it errs long for more pairs than the measured audit had and short for fewer."""
        return self.seconds_per_pair * n_pairs / 60


def measured_rate(workspace) -> MeasuredRate | None:
    """The newest finished audit of ``workspace`` with stage timings (None before any)."""
    for job in workspace.jobs("audit"):  # newest first
        folder = workspace.find_artifact(job.artifact_key) if job.status == "succeeded" and job.artifact_key else None
        if folder is None:
            continue
        report = AuditReport.read(folder)
        seconds = sum(report.timings.values())
        if seconds > 0 and report.n_pairs:
            rate = seconds / report.n_pairs
            return MeasuredRate(rate, report.n_pairs, seconds / 60, job.id, dict(report.timings), job.settings)
    return None


def audit_estimate(workspace, job, records: list[dict], now: float) -> JobEstimate:
    """Time left for the running audit ``job`` (its progress ``records`` so far, ``now`` the
    current time); see ``estimate_left``."""
    rate = measured_rate(workspace)
    if rate is None or not rate.timings:
        return JobEstimate(None, "no audit has finished in this workspace yet to measure its steps")
    rows = workspace.dataset(job.dataset_id)["rows_kept"] if job.dataset_id is not None else rate.n_pairs
    limit = job.settings.get("max_pairs")
    estimate = estimate_left(rate, rows if limit is None else min(limit, rows), records, now)
    differing = sorted(
        k
        for k in set(rate.settings) | set(job.settings)
        if k not in _NOT_SCALED and rate.settings.get(k) != job.settings.get(k)
    )
    if differing and estimate.seconds is not None:
        named = ", ".join(differing[:3]) + (" ..." if len(differing) > 3 else "")
        return JobEstimate(estimate.seconds, f"{estimate.basis}; rougher: that audit had other settings ({named})")
    return estimate


def estimate_left(rate: MeasuredRate, n_pairs: int, records: list[dict], now: float) -> JobEstimate:
    """The steps still to come at the measured audit's seconds per step scaled by pairs, times how
    this run's finished steps compare with that audit's (1 before any has finished); the step
    under way at its own measured time left where it has one. Steps that report no progress are
    placed by the steps around them."""
    order = list(rate.timings)
    scale = n_pairs / rate.n_pairs
    latest = {r["stage"]: r for r in records if r.get("stage") in rate.timings}
    source = (
        f"audit job {rate.job_id}'s steps ({rate.minutes:.1f} min for {rate.n_pairs:,} pairs) scaled to {n_pairs:,}"
    )
    if not latest:
        return JobEstimate(sum(rate.timings.values()) * scale, f"{source}; not yet corrected by this run")
    current = max(latest, key=order.index)
    finished = [s for s in latest if s != current or _done(latest[s])]
    expected = sum(rate.timings[s] * scale for s in finished)
    correction = sum(latest[s]["elapsed"] for s in finished) / expected if finished and expected > 0 else 1.0
    to_come = sum(rate.timings[s] * scale for s in order[order.index(current) + 1 :]) * correction
    record = latest[current]
    if not _done(record):
        eta = record.get("eta")
        own = eta if eta is not None else max(0.0, rate.timings[current] * scale * correction - record["elapsed"])
        left = to_come + own
    else:  # between reporting steps: time since the last one has gone to the steps to come
        left = to_come - (now - record["t"])
        if left < 0:
            return JobEstimate(None, f"this run is past what {source} predicts")
    basis = f"{source}, × {correction:.2f} for how this run's finished steps compare" if finished else source
    return JobEstimate(left, basis)


def _done(record: dict) -> bool:
    return bool(record["total"]) and record["done"] >= record["total"]
