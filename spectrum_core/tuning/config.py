"""Configuration of tuning runs: one dataclass per method over the settings they share, and
presets per hardware."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import yaml



@dataclass
class TuningConfig:
    """Settings every method shares. LoRA through peft unless ``full_finetune``."""

    plan_id: int = 0
    model: str = "bundled"
    full_finetune: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target: str = "all-linear"
    learning_rate: float = 2e-4
    max_steps: int = 30
    batch_size: int = 2
    grad_accum: int = 1
    max_length: int = 384
    max_train_pairs: int | None = 200  # a seeded sample of the plan's train split; None: all
    seed: int = 0
    save_steps: int = 10
    logging_steps: int = 1
    dtype: str | None = None  # None: bfloat16 where fast, else float32
    num_processes: int = 1  # > 1: `accelerate launch` with that many processes (GPUs, or CPU processes)
    caft: bool = False  # project the suppressed concepts out of the residual stream while training
    # IA2 priming (supervised methods): align attention outputs without demonstrations to those with.
    ia2_priming: bool = False
    ia2_steps: int = 20
    ia2_demos: int = 3
    ia2_learning_rate: float = 1e-3
    method: str = field(default="", init=False)

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)

    def identity(self) -> dict:
        return asdict(self)


@dataclass
class DPORunConfig(TuningConfig):
    """Weighted DPO on the plan's shaped pairs."""

    beta: float = 0.1
    method: str = field(default="dpo", init=False)


@dataclass
class SpectrumRunConfig(TuningConfig):
    """Spectrum Tuning: supervised tuning on a mixture of distribution tasks in the Spectrum format
    plus the plan's shaped chosen responses; whole families held out for evaluation."""

    families: str = "polis,diffuse,coin,urn,categorical,chat"
    held_out_families: str = "ambient"
    tasks_per_family: int = 40
    samples_per_task: int = 12
    method: str = field(default="spectrum", init=False)

    def family_list(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.families.split(",") if f.strip())

    def held_out_list(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.held_out_families.split(",") if f.strip())


@dataclass
class ReSetRunConfig(TuningConfig):
    """ReSet: sample, score with the shaped reward and the task scorers, keep the best candidate
    over the threshold, tune on the kept set; ``max_steps`` is per round."""

    rounds: int = 1
    candidates_per_temperature: int = 2
    temperatures: str = "0.7,1.0"
    threshold: float = 0.0
    max_new_tokens: int = 96
    preference_prompts: int = 12
    context_prompts: int = 6  # bundled HaluEval QA items (context-grounded)
    constraint_prompts: int = 6
    reward_weight: float = 1.0
    task_weight: float = 1.0
    reward_pairs: int = 120  # pairs the shaped reward is fitted on
    method: str = field(default="reset", init=False)

    def temperature_list(self) -> list[float]:
        return [float(t) for t in self.temperatures.split(",") if t.strip()]


CONFIG_CLASSES = {"dpo": DPORunConfig, "spectrum": SpectrumRunConfig, "reset": ReSetRunConfig}


def config_from_dict(data: dict) -> TuningConfig:
    """A config from YAML or the app's form; unknown keys are refused by name."""
    data = dict(data)
    method = data.pop("method", "dpo")
    if method not in CONFIG_CLASSES:
        raise ValueError(f"unknown tuning method {method!r}; choose one of {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[method]
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{method}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)


def preset(method: str, hardware: str) -> TuningConfig:
    """``cpu-demo``: minutes on a laptop CPU with the bundled model. ``gpu``: a real run."""
    cls = CONFIG_CLASSES[method]
    if hardware == "cpu-demo":
        return cls(max_steps=20, batch_size=2, max_length=320, max_train_pairs=120, save_steps=10)
    if hardware == "gpu":
        return cls(max_steps=500, batch_size=8, grad_accum=2, max_length=1024, max_train_pairs=None,
                   save_steps=100, lora_r=16, lora_alpha=32, learning_rate=1e-4)
    raise ValueError(f"unknown hardware preset {hardware!r}; use cpu-demo or gpu")


def tune_cli_args(config: TuningConfig, hardware: str) -> list[str]:
    """The ``spectrum tune`` arguments that reproduce ``config``: the preset plus every setting
    that differs from it."""
    base = asdict(preset(config.method, hardware))
    args = ["tune", "--plan", str(config.plan_id), "--method", config.method, "--preset", hardware]
    for key, value in asdict(config).items():
        if key in ("method", "plan_id") or base.get(key) == value:
            continue
        args += ["--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    return args
