"""Configuration of tuning runs: one dataclass per method over the settings they share, and
presets per hardware."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import yaml

from ..errors import ConfigError
from ..settings import cli_args, from_dict, plain, setting, validate

Method = Literal["dpo", "spectrum", "reset"]
CaftMode = Literal["zero", "mean", "steer"]


@dataclass
class TuningConfig:
    """Settings every method shares. LoRA through peft unless ``full_finetune``."""

    plan_id: int = setting(
        0, "saved plan id (the Interventions page's Save)", flags=("--plan",), form=False, label="Plan"
    )
    model: str = setting("bundled", "base model: 'bundled', a hub id or a local folder", label="Base model")
    full_finetune: bool = setting(
        False, "train every weight instead of a LoRA adapter", label="Train every weight (no LoRA)", advanced=True
    )
    lora_r: int = setting(8, "LoRA rank", label="LoRA rank", advanced=True)
    lora_alpha: int = setting(16, "LoRA scaling alpha", label="LoRA alpha", advanced=True)
    lora_dropout: float = setting(0.0, "LoRA dropout", label="LoRA dropout", advanced=True)
    lora_target: tuple[str, ...] = setting(
        ("all-linear",), "modules that get LoRA: all-linear, or module names", label="Modules with LoRA", advanced=True
    )
    learning_rate: float = setting(2e-4, "learning rate (constant schedule)", label="Learning rate")
    max_steps: int = setting(30, "optimizer steps (ReSet: per round)", label="Optimizer steps")
    batch_size: int = setting(2, "examples per device per step", label="Examples per step")
    grad_accum: int = setting(1, "gradient accumulation steps", label="Gradient accumulation steps", advanced=True)
    max_length: int = setting(384, "longest tokenized example", label="Longest example (tokens)", advanced=True)
    max_train_pairs: int | None = setting(
        200, "a seeded sample of the plan's train split (none: all)", label="Training pairs"
    )
    seed: int = setting(0, "seed of sampling, initialisation and data order", label="Seed")
    save_steps: int = setting(
        10,
        "checkpoint every this many steps (a stopped run resumes from the last)",
        label="Checkpoint every (steps)",
        advanced=True,
    )
    keep_checkpoints: int | None = setting(
        None,
        "saved checkpoints kept (none: all; each is a point of the evaluation's curves over steps)",
        label="Checkpoints kept",
        advanced=True,
    )
    logging_steps: int = setting(
        1, "log loss and metrics every this many steps", label="Log every (steps)", advanced=True
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = setting(
        None,
        "training dtype (none: bfloat16 where the hardware is fast at it, else float32)",
        label="Training precision",
        advanced=True,
    )
    num_processes: int = setting(
        1,
        "> 1: `accelerate launch` with this many processes (GPUs, or CPU processes)",
        label="Processes",
        advanced=True,
    )
    caft: bool = setting(
        False,
        "CAFT: act on the suppressed concepts' directions in the residual stream while training",
        label="CAFT: act on suppressed directions",
    )
    caft_mode: CaftMode = setting(
        "zero",
        "CAFT: zero (project the directions out), mean (set their component to its mean on the "
        "plan's responses) or steer (add the directions, preventative steering)",
        label="CAFT mode",
        needs="caft",
    )
    caft_strength: float = setting(
        1.0,
        "CAFT steer: multiples of the component's standard deviation on the plan's responses",
        label="CAFT steering strength",
        needs="caft",
    )
    ia2_priming: bool = setting(
        False,
        "IA2 priming (supervised methods): align attention outputs without "
        "demonstrations to those with them, before tuning",
        label="IA2 priming",
    )
    ia2_steps: int = setting(20, "IA2 priming steps", label="IA2 priming steps", needs="ia2_priming")
    ia2_demos: int = setting(
        3, "demonstrations per IA2 priming example", label="IA2 demonstrations per example", needs="ia2_priming"
    )
    ia2_learning_rate: float = setting(
        1e-3, "IA2 priming learning rate", label="IA2 learning rate", needs="ia2_priming"
    )
    ia2_tokens: int = setting(
        1,
        "IA2: tokens of the teacher's own answer whose predicting positions are aligned (the paper's default: 1)",
        label="IA2 answer tokens aligned",
        advanced=True,
        needs="ia2_priming",
    )
    method: Method = field(default="dpo", init=False)

    def __post_init__(self):
        validate(self)
        if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
            raise ConfigError("keep_checkpoints must be at least 1 (or none: keep all)")

    def to_yaml(self) -> str:
        return yaml.safe_dump(plain(self), sort_keys=False)

    def identity(self) -> dict:
        return plain(self)


@dataclass
class DPORunConfig(TuningConfig):
    """Weighted DPO on the plan's shaped pairs."""

    beta: float = setting(0.1, "DPO temperature β", label="DPO β (temperature)")
    method: Method = field(default="dpo", init=False)


@dataclass
class SpectrumRunConfig(TuningConfig):
    """Spectrum Tuning: supervised tuning on a mixture of distribution tasks in the Spectrum format
    plus the plan's shaped chosen responses; whole families held out for evaluation."""

    families: tuple[str, ...] = setting(
        ("polis", "diffuse", "coin", "urn", "categorical", "chat"),
        "task families in the mixture (chat: the plan's chosen responses)",
        label="Task families",
    )
    held_out_families: tuple[str, ...] = setting(
        ("ambient",), "families left out of training for evaluation", label="Families held out"
    )
    tasks_per_family: int = setting(40, "tasks built per family", label="Tasks per family", advanced=True)
    samples_per_task: int = setting(12, "samples per Spectrum task", label="Samples per task", advanced=True)
    method: Method = field(default="spectrum", init=False)


@dataclass
class ReSetRunConfig(TuningConfig):
    """ReSet: sample, score with the shaped reward and the task scorers, keep the best candidate
    over the threshold, tune on the kept set; ``max_steps`` is per round."""

    rounds: int = setting(1, "sample → score → keep → tune rounds", label="Rounds")
    candidates_per_temperature: int = setting(
        2, "samples per prompt at each temperature", label="Candidates per temperature", advanced=True
    )
    temperatures: tuple[float, ...] = setting(
        (0.7, 1.0), "sampling temperatures", label="Sampling temperatures", advanced=True
    )
    threshold: float = setting(
        0.0, "keep a prompt's best candidate only if its score is above this", label="Keep threshold"
    )
    max_new_tokens: int = setting(96, "longest sampled response", label="Longest sample (tokens)", advanced=True)
    preference_prompts: int = setting(12, "prompts from the plan's train pairs", label="Preference prompts")
    context_prompts: int = setting(6, "bundled HaluEval questions (context-grounded)", label="Context-grounded prompts")
    constraint_prompts: int = setting(6, "prompts with checkable constraints", label="Constraint prompts")
    reward_weight: float = setting(
        1.0, "weight of the shaped reward in the score", label="Reward weight", advanced=True
    )
    task_weight: float = setting(
        1.0, "weight of the task scorers in the score", label="Task scorer weight", advanced=True
    )
    reward_pairs: int = setting(
        120, "pairs the shaped reward is fitted on", label="Reward fitting pairs", advanced=True
    )
    method: Method = field(default="reset", init=False)


CONFIG_CLASSES = {"dpo": DPORunConfig, "spectrum": SpectrumRunConfig, "reset": ReSetRunConfig}


def config_from_dict(data: dict) -> TuningConfig:
    """A config from YAML or the app's form; unknown keys are refused by name."""
    data = dict(data)
    method = data.pop("method", "dpo")
    if method not in CONFIG_CLASSES:
        raise ConfigError(f"unknown tuning method {method!r}; choose one of {', '.join(CONFIG_CLASSES)}")
    return from_dict(CONFIG_CLASSES[method], data, owner=method)


def preset(method: str, hardware: str) -> TuningConfig:
    """``cpu-demo``: minutes on a laptop CPU with the bundled model. ``gpu``: a real run."""
    cls = CONFIG_CLASSES[method]
    if hardware == "cpu-demo":
        return cls(max_steps=20, batch_size=2, max_length=320, max_train_pairs=120, save_steps=10)
    if hardware == "gpu":
        return cls(
            max_steps=500,
            batch_size=8,
            grad_accum=2,
            max_length=1024,
            max_train_pairs=None,
            save_steps=100,
            lora_r=16,
            lora_alpha=32,
            learning_rate=1e-4,
        )
    raise ConfigError(f"unknown hardware preset {hardware!r}; use cpu-demo or gpu")


def tune_cli_args(config: TuningConfig, hardware: str) -> list[str]:
    """The ``spectrum tune`` arguments that reproduce ``config``: the preset plus every setting
    that differs from it."""
    return [
        "tune",
        "--plan",
        str(config.plan_id),
        "--method",
        config.method,
        "--preset",
        hardware,
        *cli_args(config, preset(config.method, hardware), skip=("plan_id",)),
    ]
