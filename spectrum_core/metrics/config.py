"""Evaluation settings: one dataclass, with presets sized for a CPU demo and for a GPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import yaml

from ..tuning.spectrum_format import BUILDERS


@dataclass
class EvalConfig:
    seed: int = 0
    # in-context steerability: tasks from the evaluation quarter of each family
    steer_families: str = "polis,ambient,coin,urn,categorical"
    steer_tasks_per_family: int = 6
    steer_samples: int = 12
    # valid output coverage: the diffuse-distribution prompts of the evaluation quarter
    coverage_prompts: int = 6
    coverage_samples: int = 100
    coverage_temperature: float = 1.0
    coverage_max_new_tokens: int = 16
    # distributional alignment
    polis_statements: int = 24
    ambient_items: int = 24
    # concept prevalence, reward and diversity: responses to held-out prompts of the audited dataset
    prevalence_prompts: int = 32
    prevalence_temperature: float = 0.7
    prevalence_max_new_tokens: int = 64
    # preference: held-out pairs of the plan for a DPO run's implicit reward; pairs to fit a shaped
    # reward when the run did not bring one
    preference_pairs: int = 32
    reward_pairs: int = 60
    # faithfulness vs instruction following
    grounded_questions: int = 16
    constraint_prompts: int = 16
    answer_max_new_tokens: int = 64
    every_checkpoint: bool = True  # ReSet runs: one faithfulness point per saved checkpoint
    # execution
    max_length: int = 1024
    batch_size: int = 8
    dtype: str | None = None
    device: str | None = None

    def __post_init__(self):
        unknown = [f for f in self.family_list() if f not in BUILDERS]
        if unknown:
            raise ValueError(f"unknown steerability families {unknown}; known: {', '.join(BUILDERS)}")
        for name in ("steer_samples", "coverage_samples", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def family_list(self) -> list[str]:
        return [f.strip() for f in self.steer_families.split(",") if f.strip()]

    def identity(self) -> dict:
        """What the results depend on (device, dtype and batch size only change speed)."""
        return {k: v for k, v in asdict(self).items() if k not in ("batch_size", "device", "dtype")}

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


PRESETS = {
    "cpu-demo": {},
    "gpu": dict(steer_tasks_per_family=40, steer_samples=24, coverage_prompts=100, polis_statements=400,
                ambient_items=139, prevalence_prompts=256, prevalence_max_new_tokens=192, preference_pairs=400,
                reward_pairs=600, grounded_questions=62, constraint_prompts=62, batch_size=32),
}


def eval_preset(name: str, **overrides) -> EvalConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown evaluation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return EvalConfig(**{**PRESETS[name], **overrides})


def eval_config_from_dict(values: dict) -> EvalConfig:
    known = {f.name for f in fields(EvalConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown evaluation settings {unknown}; known: {', '.join(sorted(known))}")
    return EvalConfig(**values)
