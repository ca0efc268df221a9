"""How long an audit will take here, from how long the last one took on this workspace's machine."""

from __future__ import annotations

from dataclasses import dataclass

from .report import AuditReport


@dataclass(frozen=True)
class MeasuredRate:
    """An earlier audit's whole time per pair, and which audit it comes from."""

    seconds_per_pair: float
    n_pairs: int
    minutes: float
    job_id: int

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
            return MeasuredRate(seconds / report.n_pairs, report.n_pairs, seconds / 60, job.id)
    return None
