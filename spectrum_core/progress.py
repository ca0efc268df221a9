"""Progress reporting shared by long work: a callback ``progress(stage, done, total, **info)``.

This is the one progress contract in Spectrum (messages for people go through ``logging``).

The CLI shows it as a progress bar per stage; a job writes it as JSON lines that the app reads
to draw the same numbers (stage, counts, elapsed and remaining time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int, **info) -> None: ...


def combine(*callbacks: Callable | None) -> Progress:
    """One callback that calls each of the given ones (``None`` entries are skipped)."""
    live = [c for c in callbacks if c is not None]

    def progress(stage: str, done: int, total: int, **info) -> None:
        for callback in live:
            callback(stage, done, total, **info)

    return progress


class ProgressLog:
    """Appends ``{"t", "stage", "done", "total", "elapsed", "eta", ...}`` lines to a file,
    at most every ``interval`` seconds per stage (and always at a stage's end)."""

    def __init__(self, path: Path, interval: float = 0.5):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.interval = interval
        self._stage_started: dict[str, float] = {}
        self._last_write: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, **info) -> None:
        now = time.time()
        started = self._stage_started.setdefault(stage, now)
        finished = total and done >= total
        if not finished and now - self._last_write.get(stage, 0.0) < self.interval:
            return
        self._last_write[stage] = now
        elapsed = now - started
        eta = elapsed / done * (total - done) if done and total else None
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
