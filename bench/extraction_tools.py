"""Benchmark: Spectrum's extraction beside the tools researchers use, on the same texts, model and
layer, in one process: TransformerLens's `run_with_cache` with `stop_at_layer` and a names filter
(the route sae-lens's activation store takes), and a plain transformers forward with an output
hook on the block.

Every route reads the same point (`blocks.L.hook_resid_post`, the middle block) of the bundled
model in bfloat16 for the response tokens of the same HH pairs, with the same length-sorted,
token-budgeted, right-padded batches (so padding is equal), and keeps the response tokens on the
CPU. Throughput is in sequence tokens per second: each response with its prompt, the work every
route is asked to do (Spectrum's prompt sharing does less of it; that is the point). Routes run
in turn, twice, and the faster of the two is kept, so a noisy neighbour hurts every route alike.

Run: `.venv/bin/python bench/extraction_tools.py [N_PAIRS]` (default 300; about 5 minutes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 2


def hooked_transformer(loaded):
    """A TransformerLens HookedTransformer holding the bundled model's own weights (TL's model
    list has no SmolLM2, so the config is its Llama conversion filled from the HF config)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights

    hf = loaded.model.config
    head = hf.hidden_size // hf.num_attention_heads
    cfg = HookedTransformerConfig(
        d_model=hf.hidden_size,
        d_head=head,
        n_heads=hf.num_attention_heads,
        d_mlp=hf.intermediate_size,
        n_layers=hf.num_hidden_layers,
        n_ctx=hf.max_position_embeddings,
        eps=hf.rms_norm_eps,
        d_vocab=hf.vocab_size,
        act_fn=hf.hidden_act,
        n_key_value_heads=hf.num_key_value_heads,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=head,
        rotary_base=float(getattr(hf, "rope_theta", None) or hf.rope_parameters["rope_theta"]),
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        dtype=loaded.dtype,
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=loaded.tokenizer, move_to_device=True)
    model.load_and_process_state_dict(
        convert_llama_weights(loaded.model, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
    )
    return model.eval()


def main() -> None:
    from spectrum_core.audit.extract.activations import (
        ActivationConfig,
        _budget_batches,
        _plan,
        batch_token_budget,
        decoder_layers,
        default_layer,
        hook_name,
        pair_residuals,
        tokenize_pairs,
    )
    from spectrum_core.data import load_preferences
    from spectrum_core.models import load_model

    n_pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    loaded = load_model("bundled")
    layer = default_layer(loaded.model)
    pairs = load_preferences(ROOT / "data" / "hh-rlhf-harmless-base-test.jsonl.gz").pairs.head(n_pairs)
    shared_config = ActivationConfig(layer=layer)
    whole_config = ActivationConfig(layer=layer, share_prompts=False)
    records = tokenize_pairs(loaded.tokenizer, pairs, whole_config)
    sequence_tokens = sum(len(r["ids"]) for r in records)
    batches = [
        batch
        for shard in _plan(records, whole_config)
        for batch in _budget_batches(shard, lambda i: len(records[i]["ids"]), batch_token_budget(loaded, layer))
    ]
    pad_id = loaded.tokenizer.pad_token_id or 0

    def padded(batch):
        ids = torch.full((len(batch), max(len(records[i]["ids"]) for i in batch)), pad_id, dtype=torch.long)
        for row, index in enumerate(batch):
            ids[row, : len(records[index]["ids"])] = torch.tensor(records[index]["ids"])
        return ids

    def keep(resid, batch):
        return [
            resid[row, records[i]["prefix"] : len(records[i]["ids"])].to("cpu", torch.bfloat16)
            for row, i in enumerate(batch)
        ]

    def spectrum(config):
        def run():
            for shard in _plan(records, config):
                from spectrum_core.audit.extract.activations import residuals

                extract = pair_residuals if config.share_prompts else residuals
                extract(loaded, records, shard, layer, config, lambda n: None)

        return run

    tl = hooked_transformer(loaded)

    @torch.inference_mode()
    def transformer_lens():
        for batch in batches:
            _, cache = tl.run_with_cache(padded(batch), stop_at_layer=layer + 1, names_filter=hook_name(layer))
            keep(cache[hook_name(layer)], batch)

    @torch.inference_mode()
    def transformers_hook():
        captured = {}
        handle = decoder_layers(loaded.model)[layer].register_forward_hook(
            lambda module, args, output: captured.__setitem__(
                "resid", output[0] if isinstance(output, tuple) else output
            )
        )
        try:
            for batch in batches:
                loaded.model(input_ids=padded(batch), use_cache=False)
                keep(captured.pop("resid"), batch)
        finally:
            handle.remove()

    # Same numbers first: TransformerLens's conversion reads what the hook reads.
    with torch.inference_mode():
        ids = padded(batches[0][:2])
        _, cache = tl.run_with_cache(ids, stop_at_layer=layer + 1, names_filter=hook_name(layer))
        hidden = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1]
        gap = float((cache[hook_name(layer)].float() - hidden.float()).norm() / hidden.float().norm())
    routes = {
        "Spectrum, prompt once per pair (default)": spectrum(shared_config),
        "Spectrum, each response with its prompt": spectrum(whole_config),
        "TransformerLens `run_with_cache(stop_at_layer, names_filter)`": transformer_lens,
        "transformers forward + output hook (whole model)": transformers_hook,
    }
    best = {name: float("inf") for name in routes}
    for _ in range(ROUNDS):
        for name, run in routes.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    spectrum_rate = sequence_tokens / best["Spectrum, prompt once per pair (default)"]
    print(
        f"{n_pairs} HH pairs, {sequence_tokens:,} sequence tokens (each response with its prompt), bundled "
        f"SmolLM2-135M-Instruct, block {layer}, {loaded.dtype}, {torch.get_num_threads()} threads; "
        f"TransformerLens vs transformers, relative difference of the activations read: {gap:.1e}"
    )
    print("| route | time (best of 2) | sequence tokens/s | Spectrum's speed ÷ this route's |")
    print("|---|---|---|---|")
    for name, seconds in best.items():
        rate = sequence_tokens / seconds
        print(f"| {name} | {seconds:.1f} s | {rate:,.0f} | {spectrum_rate / rate:.2f} |")


if __name__ == "__main__":
    main()
