"""Spectrum Tuning at demo scale: do tuned models use in-context samples to override their priors,
on task families they never trained on?

Spectrum Tuning (the library's `spectrum` method, without a plan: no chat family) trains on the
bundled families but one, held out whole (AmbiEnt, the existing split). For each seed, base and
tuned models are measured on held-out items only:

- loss ≥ 1: the mean loss (nats per output) of each output of a held-out-family task given the
  samples before it, over outputs with at least one earlier sample; and its curve over i (the
  Spectrum Suite's in-context steerability: it should fall with i, and fall below the base's);
- JS: Jensen–Shannon divergence (bits; the paper's code reports nats, 0.693 × these) between the
  model's distribution over AmbiEnt's options and the annotators' on held-out items (the
  distributional alignment the paper reports);
- yield: distinct valid outputs among samples at temperature 1 on the diffuse-distribution
  prompts of the evaluation quarter (the paper: tuned models cover more of the valid set than the
  instruction-tuned one). Diffuse is a training family, so these are held-out items, not a
  held-out family. Every model is asked the way Spectrum Tuning trains, the request as the task
  description and then "Another sample." (an earlier version asked the request as a user turn,
  off the tuned model's format).

The base model is the instruction-tuned SmolLM2, so "base" is the paper's instruction-tuned
baseline. 95% intervals over seeds. Run: `.venv/bin/python bench/methods/spectrum.py
[--preset cpu|gpu|smoke]`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import arguments, finish, preset_settings, summarise

PRESETS = {
    # Sized to finish within 20 minutes on the project's 2-core CPU with the bundled model.
    "cpu": dict(
        model="bundled",
        families=["polis", "diffuse", "coin", "urn", "categorical"],
        held_out="ambient",
        tasks_per_family=16,
        samples_per_task=12,
        max_steps=40,
        batch_size=4,
        learning_rate=1e-3,
        max_length=512,
        held_out_tasks=16,
        js_items=30,
        yield_prompts=4,
        yield_samples=16,
        seeds=3,
    ),
    "gpu": dict(
        model="bundled",
        families=["polis", "diffuse", "coin", "urn", "categorical"],
        held_out="ambient",
        tasks_per_family=200,
        samples_per_task=16,
        max_steps=600,
        batch_size=16,
        learning_rate=2e-4,
        max_length=1024,
        held_out_tasks=100,
        js_items=150,
        yield_prompts=30,
        yield_samples=100,
        seeds=5,
    ),
    "smoke": dict(
        model="bundled",
        families=["coin", "urn"],
        held_out="ambient",
        tasks_per_family=2,
        samples_per_task=4,
        max_steps=2,
        batch_size=2,
        learning_rate=1e-3,
        max_length=256,
        held_out_tasks=2,
        js_items=2,
        yield_prompts=1,
        yield_samples=3,
        seeds=2,
    ),
}
# Points of the loss curve over i reported (the curve's start, and a few later samples).
CURVE_POINTS = (0, 1, 2, 4, 8)


def measure(model, tokenizer, settings: dict, seed: int) -> dict[str, float]:
    from spectrum_core.metrics import alignment, steerability
    from spectrum_core.metrics.coverage import coverage_metrics
    from spectrum_core.sampling import sample_responses
    from spectrum_core.tasks.families import ambient_rows, build_mixture, diffuse_rows
    from spectrum_core.tasks.spectrum_format import sample_prompt

    model.eval()
    tasks = build_mixture(
        (settings["held_out"],), settings["held_out_tasks"], settings["samples_per_task"], seed, split="eval"
    )
    losses, calibration = steerability.output_losses(model, tokenizer, tasks, settings["max_length"], 4)
    summary = steerability.summarise(losses, calibration)
    out = {"loss ≥ 1": summary["loss_ge1"], "loss i=0": summary["loss_first"]}
    curve = {int(point["i"]): point["loss"] for point in summary["curve"]}
    out.update({f"loss i={i}": curve[i] for i in CURVE_POINTS if i in curve and i > 0})
    rows = ambient_rows("eval")[: settings["js_items"]]
    out["JS"] = alignment.summarise(alignment.ambient_alignment(model, tokenizer, rows, 8))["ambient"]["js"]
    yields = []
    for index, (request, valid) in enumerate(diffuse_rows("eval")[: settings["yield_prompts"]]):
        samples = sample_responses(
            model,
            tokenizer,
            [sample_prompt(request)],  # the request as a task description, as tuning saw it
            n=settings["yield_samples"],
            temperature=1.0,
            max_new_tokens=24,
            batch_size=settings["yield_samples"],
            seed=seed * 1000 + index,
        )[0]
        yields.append(coverage_metrics(samples, valid)["yield"])
    out["yield"] = sum(yields) / len(yields)
    return out


def main() -> None:
    from spectrum_core.models import load_model
    from spectrum_core.tuning.config import SpectrumRunConfig
    from spectrum_core.tuning.trainers import spectrum_examples, train_sft

    args = arguments(__doc__.splitlines()[0], PRESETS)
    settings = preset_settings(args, PRESETS)
    started = time.perf_counter()
    base = load_model(settings["model"])
    per_seed: dict[str, dict[str, list[float]]] = {}
    for seed in range(settings["seeds"]):
        config = SpectrumRunConfig(
            model=settings["model"],
            seed=seed,
            families=tuple(settings["families"]),
            held_out_families=(settings["held_out"],),
            tasks_per_family=settings["tasks_per_family"],
            samples_per_task=settings["samples_per_task"],
            max_steps=settings["max_steps"],
            batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            max_length=settings["max_length"],
            save_steps=10**6,
            logging_steps=10**6,
        )
        examples, _ = spectrum_examples(config, [], base.tokenizer)
        with tempfile.TemporaryDirectory() as tmp:
            tuned, _ = train_sft(None, config, Path(tmp), examples, load_model(settings["model"]), 0, None)
            results = {"base": measure(base.model, base.tokenizer, settings, seed), "Spectrum Tuning": {}}
            results["Spectrum Tuning"] = measure(tuned, base.tokenizer, settings, seed)
        for condition, metrics in results.items():
            for metric, value in metrics.items():
                per_seed.setdefault(condition, {}).setdefault(metric, []).append(value)
        print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    summary = summarise(per_seed)
    metrics = ["loss ≥ 1", "JS", "yield"] + [f"loss i={i}" for i in CURVE_POINTS]
    base_loss, tuned_loss = summary["base"]["loss ≥ 1"], summary["Spectrum Tuning"]["loss ≥ 1"]
    headline = (
        f"on held-out families ({settings['held_out']}), loss ≥ 1 went from {base_loss['text']} (base) to "
        f"{tuned_loss['text']} ({settings['seeds']} seeds, {args.preset} preset)"
    )
    finish("spectrum", args, settings, summary, [m for m in metrics if m in summary["base"]], headline, started)


if __name__ == "__main__":
    main()
