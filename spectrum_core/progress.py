"""Progress reporting shared by long work: a callback ``progress(stage, done, total, **info)``.

This is the one progress contract in Spectrum (messages for people go through ``logging``).

The CLI shows it as a progress bar per stage; a job writes it as JSON lines that the app reads
to draw the same numbers (stage, counts, elapsed and remaining time). A stage made of named steps
that cannot all count their work (a tuning run's preparation) goes through ``StepsReport``, whose
heartbeat keeps it visible; ``JobEstimate`` is a whole job's time left and what it rests on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# How often a step that cannot count its own work (loading a model) repeats its record, so a page
# polling every two seconds sees it alive and for how long; well under the "every few seconds" a
# researcher watching a job needs, and far too rare to cost anything.
HEARTBEAT_SECONDS = 3.0


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int, **info) -> None: ...


def combine(*callbacks: Callable | None) -> Progress:
    """One callback that calls each of the given ones (``None`` entries are skipped)."""
    live = [c for c in callbacks if c is not None]

    def progress(stage: str, done: int, total: int, **info) -> None:
        for callback in live:
            callback(stage, done, total, **info)

    return progress


def labelled(progress: Callable | None, label: str) -> Progress:
    """``progress`` with every stage named ``"<label>: <stage>"`` and ``model=label`` in each record:
    a job that works on several models (an evaluation of the base and a tuned run) never shows a
    line that does not say which model it is about."""

    def report(stage: str, done: int, total: int, **info) -> None:
        if progress is not None:
            progress(f"{label}: {stage}", done, total, **{**info, "model": label})

    return report


@dataclass(frozen=True)
class JobEstimate:
    """Time left for a whole job and, in a few words, what that figure rests on. ``seconds`` is
    None where no honest figure can be made; ``basis`` then says why."""

    seconds: float | None
    basis: str


class StepsReport:
    """A stage made of named steps of unlike kinds (load the model, tokenize, build the trainer),
    reported as ``stage`` with ``done`` = steps finished of ``total`` and ``step`` = the current
    one's name; a step that counts its work adds ``step_done`` / ``step_total`` / ``step_unit``.
    While the report is open, a heartbeat thread repeats the current record every ``heartbeat``
    seconds with ``step_elapsed``, so a step that cannot count (loading a model) still shows it is
    alive and for how long. ``finish`` writes the stage's end; leaving the ``with`` block stops the
    heartbeat in any case."""

    def __init__(
        self, progress: Callable | None, stage: str, steps: Sequence[str], heartbeat: float = HEARTBEAT_SECONDS
    ):
        self.progress, self.stage, self.steps, self.heartbeat = progress, stage, list(steps), heartbeat
        self._lock = threading.Lock()
        self._current: str | None = None
        self._count: tuple[int, int, str] | None = None
        self._began = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StepsReport:
        if self.progress is not None and self.heartbeat > 0:
            self._thread = threading.Thread(target=self._beat, name=f"{self.stage} heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt()

    def begin(self, step: str) -> None:
        """The next step starts (a name not given at first is added to the steps)."""
        with self._lock:
            if step not in self.steps:
                self.steps.append(step)
            self._current, self._count, self._began = step, None, time.monotonic()
        self._report()

    def count(self, done: int, total: int, unit: str = "", step: str | None = None) -> None:
        """The current step's own count (``step``: switch to that step first). Written by the
        heartbeat, and at once when the step's count is complete (or there is no heartbeat)."""
        if step is not None and step != self._current:
            self.begin(step)
        with self._lock:
            self._count = (done, total, unit)
        if (total and done >= total) or self._thread is None:
            self._report()

    def finish(self) -> None:
        """Every step is done: stop the heartbeat and write the stage's end."""
        self._halt()
        with self._lock:
            self._current, self._count = None, None
        if self.progress is not None:
            self.progress(self.stage, len(self.steps), len(self.steps), eta=None)

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self._report()

    def _report(self) -> None:
        with self._lock:
            if self.progress is None or self._current is None:
                return
            info: dict = {"step": self._current, "step_elapsed": round(time.monotonic() - self._began, 1)}
            if self._count is not None:
                info.update(step_done=self._count[0], step_total=self._count[1], step_unit=self._count[2])
            done = self.steps.index(self._current)
            # A rate over unlike steps means nothing: no per-stage time left for this stage.
            self.progress(self.stage, done, len(self.steps), eta=None, **info)


class ProgressLog:
    """Appends ``{"t", "stage", "done", "total", "elapsed", "eta", ...}`` lines to a file,
    at most every ``interval`` seconds per stage (and always at a stage's end).

    ``elapsed`` runs from the stage's first record in this process and ``eta`` comes from the
    work done since then, so a resumed stage (training from step 50) is not credited with work an
    earlier process did; a stage whose count goes back (a ReSet round's training) starts again. A
    caller may give ``eta`` itself (None for a stage of unlike steps, where a rate means nothing).
    Thread-safe: a heartbeat thread may write beside the main one."""

    def __init__(self, path: Path, interval: float = 0.5):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.interval = interval
        self._stage_started: dict[str, tuple[float, int]] = {}  # stage -> (time, done) of its first record
        self._last: dict[str, tuple[float, int]] = {}  # stage -> (time, done) of its last record
        self._lock = threading.Lock()

    def __call__(self, stage: str, done: int, total: int, **info) -> None:
        with self._lock:
            now = time.time()
            last_write, last_done = self._last.get(stage, (0.0, done))
            if done < last_done:  # the stage begins again
                self._stage_started.pop(stage, None)
            started, first_done = self._stage_started.setdefault(stage, (now, done))
            finished = total and done >= total
            if not finished and now - last_write < self.interval and done >= last_done:
                return
            self._last[stage] = (now, done)
            elapsed = now - started
            eta = elapsed / (done - first_done) * (total - done) if done > first_done and total else None
            record = {
                "t": round(now, 3),
                "stage": stage,
                "done": done,
                "total": total,
                "elapsed": round(elapsed, 2),
                "eta": None if eta is None else round(eta, 2),
            }
            record.update({k: v for k, v in info.items() if k != "elapsed"})
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=str) + "\n")


def read_progress(path: Path) -> list[dict]:
    """Every record written so far; a half-written last line (the writer is mid-append) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class TqdmProgress:
    """A tqdm bar per stage, for the command line."""

    def __init__(self, **tqdm_kwargs):
        self.bars: dict = {}
        self.kwargs = tqdm_kwargs

    def __call__(self, stage: str, done: int, total: int, **info) -> None:
        from tqdm.auto import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=total, desc=stage, unit=info.get("unit", "it"), unit_scale=True, **self.kwargs
            )
        bar.total = total
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def quiet(stage: str, done: int, total: int, **info) -> None:
    """A progress callback that reports nothing."""


class ProgressFollower:
    """Follows a progress file as it grows: each ``update`` reads only the bytes written since the
    last one (a page polling a job every two seconds would otherwise re-read and re-parse a
    training run's whole log each time). A half-written last line waits for the next update; a
    file that shrank or was replaced is read again from the start."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: list[dict] = []
        self.stages: dict[str, dict] = {}  # the latest record of each stage
        self._offset = 0
        self._identity: tuple[int, int] | None = None

    def update(self) -> list[dict]:
        """The records added since the last update (all of them the first time)."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (status.st_dev, status.st_ino)
        if identity != self._identity or status.st_size < self._offset:
            self.records, self.stages, self._offset, self._identity = [], {}, 0, identity
        if status.st_size == self._offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read(status.st_size - self._offset)
        complete = chunk.rfind(b"\n") + 1  # bytes up to the last full line
        self._offset += complete
        added = []
        for line in chunk[:complete].decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "stage" in record:
                added.append(record)
                self.stages[record["stage"]] = record
        self.records.extend(added)
        return added
