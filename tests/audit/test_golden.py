"""The audit's output, bit for bit: a fixed small input against stored expected tables.

A refactor of the audit must not change a result. This runs every step (both SAE modes, probes,
statistics, families, the SAE-seed check, topics, cards, offline labels) on the first 40 bundled
LLaMA-Factory pairs with a tiny random Llama, on one thread, and compares ``concepts.parquet``,
``feature_cards.parquet``, ``pair_features.parquet`` and ``report.json`` (less its timings and
paths) with the copies in ``golden/``, which were made by the audit before the refactor.

A change that is meant to change results regenerates them, and says so in its commit:
``SPECTRUM_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/audit/test_golden.py``.

The last bits depend on the CPU (bfloat16 and BLAS kernels differ between processors: an AMD EPYC
and the machine that made the first copies agree to 1e-6 in the SAE's explained variance, and
then two families form differently). So ``golden/`` holds the copies of the machine named in
``golden/MACHINE`` ("unrecorded" for the first), and ``golden/cpu/<machine>/`` those of other
machines on which the same code gave other bits. ``SPECTRUM_REGENERATE_GOLDEN=machine`` adds this
machine's copies without touching the others (for a commit that changes no result);
``SPECTRUM_REGENERATE_GOLDEN=1`` replaces ``golden/`` and drops every machine's copies, which a
change of results makes stale. On a machine with no copies of its own, when ``golden/`` was made
on a recorded other machine, the comparison is skipped and says why.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from spectrum_core import constants as names
from spectrum_core.audit.config import AuditConfig
from spectrum_core.audit.pipeline import run_audit
from spectrum_core.data import load_preferences
from tests.conftest import LLAMAFACTORY_FILE

GOLDEN = Path(__file__).parent / "golden"
MACHINE_FILE = "MACHINE"
PROGRESS: list[tuple[str, int, int]] = []  # what the golden run reported, stage by stage
N_PAIRS = 40
CONFIG = AuditConfig(
    max_prompt_tokens=64,
    max_response_tokens=64,
    sae_training_tokens=8_000,
    sae_seeds=1,
    topics=2,
    labelled_concepts=40,
    llm_labelled_concepts=0,
    null_runs=3,
)
COMPARED_TABLES = (names.CONCEPTS_FILE, names.FEATURE_CARDS_FILE, names.PAIR_FEATURES_FILE)
# Report entries that depend on the machine or the run, not on the inputs.
VOLATILE_REPORT_KEYS = ("timings", "peak_memory_gb", "model_path", "train_seconds")


def _canonical(value) -> str:
    """An exact text form: repr of a Python float is the shortest string that reads back the same bits."""
    if isinstance(value, np.ndarray | list | tuple):
        return "[" + ", ".join(_canonical(v) for v in value) + "]"
    if isinstance(value, np.floating | float):
        return repr(float(value))
    if isinstance(value, np.integer):
        return repr(int(value))
    return repr(value)


def assert_tables_identical(actual: pd.DataFrame, expected: pd.DataFrame, name: str) -> None:
    assert list(actual.columns) == list(expected.columns), f"{name}: columns differ"
    assert len(actual) == len(expected), f"{name}: {len(actual)} rows, expected {len(expected)}"
    for column in expected.columns:
        a, e = np.ascontiguousarray(actual[column].to_numpy()), np.ascontiguousarray(expected[column].to_numpy())
        assert a.dtype == e.dtype, f"{name}.{column}: dtype {a.dtype}, expected {e.dtype}"
        if a.dtype.kind == "f":
            same = a.view(np.uint8).reshape(len(a), -1) == e.view(np.uint8).reshape(len(e), -1)
            rows = np.flatnonzero(~same.all(axis=1))
        else:
            rows = [i for i in range(len(e)) if _canonical(a[i]) != _canonical(e[i])]
        assert not len(rows), (
            f"{name}.{column}: {len(rows)} rows differ, first at row {rows[0]}: {a[rows[0]]!r} vs {e[rows[0]]!r}"
        )


def stable_report(folder: Path) -> dict:
    def drop_volatile(value):
        if isinstance(value, dict):
            return {k: drop_volatile(v) for k, v in value.items() if k not in VOLATILE_REPORT_KEYS}
        return value

    return drop_volatile(json.loads((folder / names.REPORT_FILE).read_text()))


def machine() -> str:
    """This CPU's model and the instruction set torch uses, as a folder name."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        model = found.group(1) if found else model
    return re.sub(r"[^a-z0-9]+", "-", f"{model} {torch.backends.cpu.get_cpu_capability()}".lower()).strip("-")


def golden_copies() -> Path:
    """The expected tables for this machine: its own copies, or ``golden/``'s."""
    own = GOLDEN / "cpu" / machine()
    if own.exists():
        return own
    made_on = (GOLDEN / MACHINE_FILE).read_text().strip()
    if made_on not in ("unrecorded", machine()):
        pytest.skip(f"the golden audit was made on {made_on}; this is {machine()}, whose last bits differ")
    return GOLDEN


def _regenerate(folder: Path, how: str) -> None:
    if how == "machine":
        target = GOLDEN / "cpu" / machine()
    else:
        target = GOLDEN
        shutil.rmtree(GOLDEN / "cpu", ignore_errors=True)
        (GOLDEN / MACHINE_FILE).write_text(machine() + "\n")
    target.mkdir(parents=True, exist_ok=True)
    for file in COMPARED_TABLES:
        shutil.copy(folder / file, target / file)
    (target / names.REPORT_FILE).write_text(json.dumps(stable_report(folder), indent=1) + "\n")


@pytest.fixture(scope="module")
def golden_run(tiny_model, tmp_path_factory, monkeypatch_module):
    for variable in ("SPECTRUM_LLM_BASE_URL", "SPECTRUM_LLM_MODEL"):
        monkeypatch_module.delenv(variable, raising=False)
    pairs = load_preferences(LLAMAFACTORY_FILE).pairs.head(N_PAIRS)
    out = tmp_path_factory.mktemp("golden-audit")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            run_audit(
                pairs,
                CONFIG,
                out / "audit",
                activations_dir=out / "activations",
                loaded=tiny_model,
                progress=lambda stage, done, total, **info: PROGRESS.append((stage, done, total)),
            )
    finally:
        torch.set_num_threads(threads)
    if os.environ.get("SPECTRUM_REGENERATE_GOLDEN"):
        _regenerate(out / "audit", os.environ["SPECTRUM_REGENERATE_GOLDEN"])
    return out / "audit"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("file", COMPARED_TABLES)
def test_audit_tables_match_the_stored_ones_bit_for_bit(golden_run, file):
    actual = pd.read_parquet(golden_run / file)
    expected = pd.read_parquet(golden_copies() / file)
    assert len(expected) > 0
    assert_tables_identical(actual, expected, file)


def test_audit_report_matches_the_stored_one(golden_run):
    expected = json.loads((golden_copies() / names.REPORT_FILE).read_text())
    # Compared as JSON text: exact for floats (shortest round-trip repr) and NaN-safe.
    assert json.dumps(stable_report(golden_run), sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_the_stored_audit_exercises_every_step():
    """The golden input is only a guard if each step leaves a mark in it."""
    concepts = pd.read_parquet(GOLDEN / names.CONCEPTS_FILE)
    report = json.loads((GOLDEN / names.REPORT_FILE).read_text())
    assert set(concepts["kind"]) == {"sae", "probe", "family"}
    assert set(concepts["mode"]) >= {"token", "difference", "probe", "family"}
    assert concepts["seed_stability"].notna().any()
    assert (concepts["label_source"] == "offline").any()
    assert report["topics"] and report["sae"].keys() == {"token", "difference"}
    assert report["confirmation"]["n_confirmation"] > 0 and report["null"]["runs"] > 0


def test_the_seed_check_reports_its_progress_as_it_trains(golden_run):
    """The SAE-seed check's bar moves while each retrained SAE trains (it used to say nothing until
    a whole seed was done), towards one total for the whole check."""
    seeds = [(done, total) for stage, done, total in PROGRESS if stage == "sae_seeds"]
    assert len(seeds) > 20
    assert len({total for _, total in seeds}) == 1
    done = [d for d, _ in seeds]
    assert done == sorted(done) and done[-1] == seeds[0][1]
