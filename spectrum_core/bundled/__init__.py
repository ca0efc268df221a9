"""The data files shipped inside the package: the two demo preference sets and the sources of the
Spectrum task families and the HaluEval prompts (rows, sources and licences in README.md here).
They are package data, found through importlib.resources, so an installed Spectrum reads them from
any working directory; in a checkout, ``data/`` is a link to this folder."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

HH_DEMO = "hh-rlhf-harmless-base-test.jsonl.gz"
LLAMAFACTORY_DEMO = "llamafactory-dpo-en-demo.jsonl"
POLIS_VOTES = "polis-comment-votes-min10.jsonl.gz"
POLIS_CONVERSATIONS = "polis-conversations.jsonl"
AMBIENT_LABELS = "ambient-nli-label-distributions.jsonl"
DIFFUSE_PROMPTS = "diffuse-distributions-prompts.jsonl"
HALUEVAL_QA = "halueval-qa-500.jsonl"


def bundled_file(name: str) -> Path:
    """The path of the bundled file ``name`` (one of the constants above)."""
    resource = files(__name__) / name
    if not resource.is_file():
        raise FileNotFoundError(
            f"the bundled data file {name!r} is not in {files(__name__)}; "
            "it ships as package data of spectrum_core.bundled, so the installation lacks it"
        )
    return Path(str(resource))  # setuptools installs the package as files, so the resource is a file path
