"""Evaluation settings: one dataclass, with presets sized for a CPU demo and for a GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import yaml

from ..errors import ConfigError
from ..settings import from_dict, plain, setting, validate
from ..tasks.families import BUILDERS

SECTIONS = (
    "steerability",
    "coverage",
    "alignment",
    "faithfulness",
    "preference",
    "generations",
    "diversity",
    "prevalence",
    "reward",
)


@dataclass
class EvalConfig:
    """What ``spectrum eval`` measures, section by section: steerability (in-context loss on Spectrum
    tasks), coverage (valid outputs at temperature 1), alignment (distributions vs human votes),
    faithfulness (grounded answers vs constraints), preference (a DPO run's implicit reward),
    generations → diversity, concept prevalence and the shaped reward's win rate."""

    seed: int = setting(0, "seed of every sample the evaluation draws", label="Seed")
    steer_families: tuple[str, ...] = setting(
        ("polis", "ambient", "coin", "urn", "categorical"),
        "steerability: task families (their evaluation quarter)",
        label="Steerability families",
    )
    steer_tasks_per_family: int = setting(
        6, "steerability: tasks per family", label="Steerability tasks per family", advanced=True
    )
    steer_samples: int = setting(
        12, "steerability: samples per task", label="Steerability samples per task", advanced=True
    )
    coverage_prompts: int = setting(6, "coverage: held-out diffuse-distribution prompts", label="Coverage prompts")
    coverage_samples: int = setting(
        100, "coverage: samples per prompt", label="Coverage samples per prompt", advanced=True
    )
    coverage_temperature: float = setting(
        1.0, "coverage: sampling temperature", label="Coverage temperature", advanced=True
    )
    coverage_max_new_tokens: int = setting(
        16, "coverage: longest sample", label="Coverage longest sample", advanced=True
    )
    polis_statements: int = setting(24, "alignment: Polis statements", label="Polis statements")
    ambient_items: int = setting(24, "alignment: AmbiEnt items", label="AmbiEnt items")
    prevalence_prompts: int = setting(
        32,
        "prevalence, reward, diversity: held-out prompts of the audited dataset",
        label="Prompts for prevalence and diversity",
    )
    prevalence_temperature: float = setting(
        0.7, "prevalence: sampling temperature of the generations", label="Generation temperature", advanced=True
    )
    # 128: long-form concepts (lists, sign-offs, a refusal after a preamble) need room to appear.
    prevalence_max_new_tokens: int = setting(128, "prevalence: longest generation", label="Longest generation (tokens)")
    preference_pairs: int = setting(
        32, "preference: held-out pairs of the plan for a DPO run's implicit reward", label="Held-out preference pairs"
    )
    reward_pairs: int = setting(
        60,
        "reward: pairs to fit a shaped reward when the run did not bring one",
        label="Reward fitting pairs",
        advanced=True,
    )
    grounded_questions: int = setting(
        16, "faithfulness: held-out HaluEval questions with their passage", label="Grounded questions"
    )
    constraint_prompts: int = setting(
        16, "faithfulness: questions with two checkable constraints", label="Constraint questions"
    )
    answer_max_new_tokens: int = setting(
        64, "faithfulness: longest answer", label="Longest answer (tokens)", advanced=True
    )
    every_checkpoint: bool = setting(
        True,
        "faithfulness: one point per saved checkpoint of a ReSet run",
        label="Every checkpoint (ReSet)",
        advanced=True,
    )
    max_length: int = setting(1024, "longest tokenized input", label="Longest input (tokens)", advanced=True)
    batch_size: int = setting(8, "sequences per batch (speed only)", label="Sequences per batch", advanced=True)
    dtype: Literal["float32", "bfloat16", "float16"] | None = setting(
        None, "dtype (none: bfloat16 where fast)", label="Precision", advanced=True
    )
    device: str | None = setting(
        None, "cpu, cuda, cuda:N or mps (none: the best available)", label="Device", advanced=True
    )

    def __post_init__(self):
        validate(self)
        unknown = [f for f in self.steer_families if f not in BUILDERS]
        if unknown:
            raise ConfigError(f"unknown steerability families {unknown}; known: {', '.join(BUILDERS)}")
        for name in ("steer_samples", "coverage_samples", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")

    def identity(self) -> dict:
        """What the results depend on (device, dtype and batch size only change speed)."""
        return {k: v for k, v in plain(self).items() if k not in ("batch_size", "device", "dtype")}

    def to_yaml(self) -> str:
        return yaml.safe_dump(plain(self), sort_keys=False)


PRESETS = {
    "cpu-demo": {},
    "gpu": dict(
        steer_tasks_per_family=40,
        steer_samples=24,
        coverage_prompts=100,
        polis_statements=400,
        ambient_items=139,
        prevalence_prompts=256,
        prevalence_max_new_tokens=512,
        preference_pairs=400,
        reward_pairs=600,
        grounded_questions=62,
        constraint_prompts=62,
        batch_size=32,
    ),
}


def eval_preset(name: str, **overrides) -> EvalConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown evaluation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return EvalConfig(**{**PRESETS[name], **overrides})


def eval_config_from_dict(values: dict) -> EvalConfig:
    return from_dict(EvalConfig, values, owner="evaluation")
