"""Residual-stream activations of the response tokens, streamed to sharded files.

Each response is rendered with the model's chat template (prompt turns, then the assistant turn),
and the model runs only as far as the chosen block: a forward hook on that block stores its
output and stops the pass, so no later block and no output head runs. Only the response's own
tokens are kept.

Responses are sorted by length and cut into fixed shards; each shard is batched under a token
budget (so padding stays small) and written to ``shard-NNNNN.safetensors`` by an atomic rename.
A run that stops part-way resumes at the first missing shard and produces the same files an
uninterrupted run would. With several processes (``accelerate launch``) process r takes the
shards whose number is r modulo the process count.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ... import constants as names
from ...models import LoadedModel
from ..errors import AuditInputError

ProgressFn = Callable[..., None]
# A token whose residual norm exceeds this multiple of the median is an outlier (attention-sink
# positions reach ~160x the median in SmolLM2); such tokens are left out of SAE training.
OUTLIER_NORM_RATIO = 10.0
# The SAE trains on at most this many response tokens (a seeded uniform sample beyond it): its
# training sees at most 8M samples (``sae.default_training_tokens``), eight passes over 1M
# tokens, so more tokens would only be seen fewer times while memory grew with the dataset
# (1M tokens of a 576-wide model in bfloat16 are 1.2 GB).
MAX_SAE_TRAINING_TOKENS = 1_000_000
TOKENIZE_CHUNK = 4096  # texts per tokenizer call: its batch speed, without a whole dataset's output at once


@dataclass
class ActivationConfig:
    layer: int | None = None  # block whose output (resid_post) is read; default: the middle one
    max_prompt_tokens: int = 512  # longer prompts keep their last tokens
    max_response_tokens: int = 512  # longer responses keep their first tokens
    # Padded tokens per forward pass; None: CPU_TOKENS_PER_BATCH on a CPU, sized from free memory
    # on a GPU (batch_token_budget).
    tokens_per_batch: int | None = None
    shard_size: int = 512  # responses per shard file
    # Run each pair's prompt once and both responses from its key/value cache (pairs share their
    # prompt, often hundreds of tokens of multi-turn HH), instead of each response with its prompt.
    share_prompts: bool = True


# Small batches keep activations in cache: measured on a 2-core CPU, 1-2k-token batches ran 30%
# faster than 8k-token ones.
CPU_TOKENS_PER_BATCH = 2048
# On a GPU: the share of free memory one batch may use (the rest: the allocator's slack, the SAE,
# other processes), and the bounds of the budget (below the CPU's is pointless on a GPU; above
# a quarter million tokens the batches stop getting faster and the shards get coarse).
GPU_MEMORY_SHARE = 0.4
GPU_TOKENS_PER_BATCH_MAX = 262_144


def batch_token_budget(loaded: LoadedModel, layer: int, free_bytes: int | None = None) -> int:
    """Padded tokens per extraction batch: the CPU constant, or on a GPU what fits in
    ``GPU_MEMORY_SHARE`` of its free memory. Per token that is one block's live tensors (the
    residual, attention input and output, the MLP's gated hidden states) plus the keys and
    values of blocks 0..layer that a window of shared prompts holds."""
    if not str(loaded.device).startswith("cuda"):
        return CPU_TOKENS_PER_BATCH
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(torch.device(loaded.device))[0]
    config = loaded.model.config
    width = int(config.hidden_size)
    mlp = int(getattr(config, "intermediate_size", 4 * width))
    heads = int(getattr(config, "num_attention_heads", 1))
    kv_width = int(getattr(config, "num_key_value_heads", heads)) * (width // heads)
    element = torch.finfo(loaded.dtype).bits // 8
    live = element * (6 * width + 3 * mlp)
    cached = element * 2 * kv_width * (layer + 1) * PROMPT_BATCHES_PER_WINDOW
    budget = int(free_bytes * GPU_MEMORY_SHARE / (live + cached))
    return max(CPU_TOKENS_PER_BATCH, min(GPU_TOKENS_PER_BATCH_MAX, budget))


class _StopForward(Exception):
    """Raised by the hook on the chosen block to end the forward pass early."""


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of transformer blocks of a Hugging Face causal LM, for the common layouts."""
    for path in (
        "model.layers",
        "model.model.layers",
        "base_model.model.model.layers",
        "transformer.h",
        "gpt_neox.layers",
        "model.decoder.layers",
        "transformer.blocks",
    ):
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"Cannot find the transformer blocks of {type(model).__name__}.")


def default_layer(model) -> int:
    return len(decoder_layers(model)) // 2


def hook_name(layer: int) -> str:
    """The sae-lens / TransformerLens name of the point read, so pretrained SAEs can be matched."""
    return f"blocks.{layer}.hook_resid_post"


def _base_model(model):
    """The model without its output head, when it has the usual ``.model`` attribute."""
    return getattr(model, getattr(model, "base_model_prefix", "model"), model)


def matmul_params(model, layer: int) -> int:
    """Parameters the pass multiplies each token by: the weights of blocks 0..layer. The
    embedding is a lookup, not a multiply, and the head never runs."""
    return sum(
        p.numel()
        for block in decoder_layers(model)[: layer + 1]
        for name, p in block.named_parameters()
        if p.dim() == 2
    )


def tokenize_responses(tokenizer, prompts, responses, config: ActivationConfig) -> list[dict]:
    """Token ids per (prompt, response), in order: ``response`` is the position in the lists.

    The prompt is rendered with the chat template up to the assistant turn's opening; the
    response is tokenized on its own and appended, so its token span is known exactly."""
    # Each distinct prompt object rendered once; prompts and responses then tokenized in two batch
    # calls (the fast tokenizer's batch path gives the same ids as one call per text).
    slot: dict[int, int] = {}
    rendered: list[str] = []
    prompt_slots = []
    for prompt in prompts:
        key = id(prompt)
        if key not in slot:
            slot[key] = len(rendered)
            messages = list(prompt) or [{"role": "user", "content": ""}]
            rendered.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        prompt_slots.append(slot[key])
    prefixes = [ids[-config.max_prompt_tokens :] for ids in _token_ids(tokenizer, rendered)]
    fallback = None
    records = []
    for index, (prompt_slot, response_ids) in enumerate(zip(prompt_slots, _token_ids(tokenizer, list(responses)))):
        prefix_ids = prefixes[prompt_slot]
        response_ids = response_ids[: config.max_response_tokens]
        if not len(response_ids):  # an empty generation; keep one token so spans exist
            if fallback is None:
                fallback = np.asarray(tokenizer(" ", add_special_tokens=False)["input_ids"][:1], dtype=np.int32)
            response_ids = fallback
        records.append(
            {"response": index, "prefix": len(prefix_ids), "ids": np.concatenate([prefix_ids, response_ids])}
        )
    return records


def _token_ids(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's token ids (int32), tokenized ``TOKENIZE_CHUNK`` texts at a time: the fast
    tokenizer's output for a whole dataset at once (Python ints, token strings, offsets) takes
    gigabytes at 100k pairs, its ids as arrays a few bytes a token."""
    out: list[np.ndarray] = []
    for start in range(0, len(texts), TOKENIZE_CHUNK):
        ids = tokenizer(texts[start : start + TOKENIZE_CHUNK], add_special_tokens=False)["input_ids"]
        out += [np.asarray(one, dtype=np.int32) for one in ids]
    return out


def response_token_counts(tokenizer, texts: list[str]) -> np.ndarray:
    """Tokens in each whole text, as the audit tokenizes responses but before truncation."""
    return np.array([len(ids) for ids in _token_ids(tokenizer, list(texts))], dtype=np.int64)


def tokenize_pairs(tokenizer, pairs, config: ActivationConfig) -> list[dict]:
    """Token ids per response, two per pair: index 2i is pair i's chosen, 2i+1 its rejected."""
    prompts, responses = [], []
    for prompt, chosen, rejected in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]):
        prompts += [prompt, prompt]
        responses += [chosen, rejected]
    return tokenize_responses(tokenizer, prompts, responses, config)


def _plan(records: list[dict], config: ActivationConfig) -> list[list[int]]:
    """Responses sorted by length (stable), cut into shards of ``shard_size``. With shared
    prompts, pairs (responses 2i and 2i+1) sorted by prompt length, then longer response, stay
    together, so a batch's prompts pad little and each prompt runs once."""
    if config.share_prompts:
        pairs = sorted(range(len(records) // 2), key=lambda i: (*_pair_lengths(records, i), i))
        order = [r for i in pairs for r in (2 * i, 2 * i + 1)]
        size = max(2, config.shard_size - config.shard_size % 2)
    else:
        order = sorted(range(len(records)), key=lambda i: (len(records[i]["ids"]), i))
        size = config.shard_size
    return [order[i : i + size] for i in range(0, len(order), size)]


def _pair_lengths(records: list[dict], pair: int) -> tuple[int, int]:
    """(prompt tokens, tokens of the longer response) of pair ``pair``."""
    chosen, rejected = records[2 * pair], records[2 * pair + 1]
    return chosen["prefix"], max(len(chosen["ids"]) - chosen["prefix"], len(rejected["ids"]) - rejected["prefix"])


def _budget_batches(items: list[int], length: Callable[[int], int], budget: int) -> Iterator[list[int]]:
    """Consecutive items while their number x the longest ``length`` fits ``budget`` (items
    come sorted by length, so padding stays small)."""
    batch: list[int] = []
    longest = 0
    for item in items:
        size = length(item)
        if batch and (len(batch) + 1) * max(longest, size) > budget:
            yield batch
            batch, longest = [], 0
        batch.append(item)
        longest = max(longest, size)
    if batch:
        yield batch


def _manifest(loaded: LoadedModel, pairs, records, shards, config: ActivationConfig, layer: int) -> dict:
    pair_ids = list(pairs["pair_id"])
    return {
        "format": "spectrum-activations-v1",
        "model": loaded.spec,
        "model_path": str(loaded.path),
        "layer": layer,
        "hook_name": hook_name(layer),
        "d_model": int(loaded.model.config.hidden_size),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "config": asdict(config),
        "pair_ids_sha256": hashlib.sha256("\n".join(pair_ids).encode()).hexdigest(),
        "n_pairs": len(pair_ids),
        "n_responses": len(records),
        "n_tokens_total": int(sum(len(r["ids"]) for r in records)),
        "n_response_tokens": int(sum(len(r["ids"]) - r["prefix"] for r in records)),
        "shards": shards,
    }


@torch.inference_mode()
def residuals(
    loaded: LoadedModel,
    records: list[dict],
    indices: list[int],
    layer: int,
    config: ActivationConfig,
    on_batch: Callable[[int], None],
    store_dtype: torch.dtype = torch.bfloat16,
) -> dict[str, torch.Tensor]:
    """The residual stream after block ``layer`` on the response tokens of ``records[indices]``,
    concatenated (``store_dtype``, bfloat16 in shards, on the CPU), with token ids, per-response
    offsets and indices."""
    pad_id = loaded.tokenizer.pad_token_id or 0
    pieces: list[torch.Tensor] = []  # the kept tokens' residuals and their norms, per batch
    norm_pieces: list[torch.Tensor] = []
    token_pieces, lengths, responses = [], [], []
    with _reading_block(loaded, layer) as run:
        budget = config.tokens_per_batch or batch_token_budget(loaded, layer)
        for batch in _budget_batches(indices, lambda i: len(records[i]["ids"]), budget):
            longest = max(len(records[i]["ids"]) for i in batch)
            ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
            for row, index in enumerate(batch):
                seq = records[index]["ids"]
                ids[row, : len(seq)] = torch.tensor(seq)
            # Right padding with plain causal attention: a real token never attends to the
            # padding after it, so no padding mask is needed and the fast causal kernel runs.
            resid = run(input_ids=ids, use_cache=False)
            spans = [(records[i]["prefix"], len(records[i]["ids"])) for i in batch]
            _keep_tokens(resid, spans, store_dtype, pieces, norm_pieces)
            for index, (start, end) in zip(batch, spans):
                token_pieces.append(torch.tensor(records[index]["ids"][start:end], dtype=torch.int32))
                lengths.append(end - start)
                responses.append(records[index]["response"])
            on_batch(sum(len(records[i]["ids"]) for i in batch))
    return _stacked(pieces, norm_pieces, token_pieces, lengths, responses)


def _keep_tokens(resid: torch.Tensor, spans: list[tuple[int, int]], store_dtype, pieces: list, norm_pieces: list):
    """Append the real tokens of ``resid`` (rows' ``[start, end)`` spans), cast to ``store_dtype``,
    and their norms, gathered on the model's device and moved to the CPU in one copy each: a copy
    per row costs a device synchronisation per response on a GPU."""
    keep = torch.zeros(resid.shape[:2], dtype=torch.bool)
    for row, (start, end) in enumerate(spans):
        keep[row, start:end] = True
    tokens = resid[keep.to(resid.device)].to(store_dtype)
    pieces.append(tokens.cpu())
    # Norms of the stored values, so they match what the shards hold.
    norm_pieces.append(tokens.float().norm(dim=-1).cpu())


@contextmanager
def _reading_block(loaded: LoadedModel, layer: int) -> Iterator[Callable[..., torch.Tensor]]:
    """A function that runs the model (without its head) on the given inputs only as far as block
    ``layer`` and returns that block's output: a hook stores it and stops the pass."""
    base = _base_model(loaded.model)
    captured: dict[str, torch.Tensor] = {}

    def stop_here(module, args, output):
        captured["resid"] = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    def run(**inputs) -> torch.Tensor:
        try:
            base(**{k: v.to(loaded.device) if torch.is_tensor(v) else v for k, v in inputs.items()})
        except _StopForward:
            pass
        return captured.pop("resid")

    handle = decoder_layers(loaded.model)[layer].register_forward_hook(stop_here)
    try:
        yield run
    finally:
        handle.remove()


# Prompt batches whose key/value caches are held at once: the window's responses are then re-sorted
# by length across all of them, so the response passes pad little although the window was cut by
# prompt length. Eight 2,048-token batches hold about 200 MB of cache for the bundled model.
PROMPT_BATCHES_PER_WINDOW = 8


@torch.inference_mode()
def pair_residuals(
    loaded: LoadedModel,
    records: list[dict],
    indices: list[int],
    layer: int,
    config: ActivationConfig,
    on_batch: Callable[[int], None],
    store_dtype: torch.dtype = torch.bfloat16,
) -> dict[str, torch.Tensor]:
    """``residuals`` for whole pairs (``indices`` lists responses 2i, 2i+1 together, pairs sorted
    by prompt length), each pair's prompt run once.

    Per window of pairs: the prompts run right-padded (no mask needed: no real token attends to a
    later one) into a key/value cache, and each prompt's own keys and values up to ``layer`` are
    kept. The window's responses, sorted by length, then run in batches from a cache assembled
    from their prompts' entries, left-padded (masked) to the batch's longest prompt, each response
    positioned after its own prompt. Equal to running each response with its prompt, up to the
    rounding of differently shaped products."""
    # transformers 5 names the argument `cache`; models with their own code may still use the old name
    parameters = inspect.signature(_base_model(loaded.model).forward).parameters
    cache_argument = "cache" if "cache" in parameters else "past_key_values"

    def prompt_length(pair: int) -> int:
        return records[2 * pair]["prefix"]

    def response_length(response: int) -> int:
        return len(records[response]["ids"]) - records[response]["prefix"]

    pad_id = loaded.tokenizer.pad_token_id or 0
    budget = config.tokens_per_batch or batch_token_budget(loaded, layer)
    pieces: list[torch.Tensor] = []  # the kept tokens' residuals and their norms, per batch
    norm_pieces: list[torch.Tensor] = []
    token_pieces, lengths, responses = [], [], []
    with _reading_block(loaded, layer) as read:

        def run(cache, **inputs) -> torch.Tensor:
            return read(**inputs, **{cache_argument: cache}, use_cache=True)

        pairs = [r // 2 for r in indices[::2]]
        for window in _budget_batches(pairs, prompt_length, budget * PROMPT_BATCHES_PER_WINDOW):
            kept = _prompt_caches(run, records, window, prompt_length, budget, pad_id, layer)
            window_responses = sorted((r for pair in window for r in (2 * pair, 2 * pair + 1)), key=response_length)
            for batch in _budget_batches(window_responses, response_length, budget):
                resid = _run_responses(run, records, batch, kept, pad_id, response_length)
                _keep_tokens(resid, [(0, response_length(r)) for r in batch], store_dtype, pieces, norm_pieces)
                for response in batch:
                    record = records[response]
                    token_pieces.append(torch.tensor(record["ids"][record["prefix"] :], dtype=torch.int32))
                    lengths.append(response_length(response))
                    responses.append(record["response"])
                on_batch(sum(len(records[r]["ids"]) for r in batch))
    return _stacked(pieces, norm_pieces, token_pieces, lengths, responses)


def _prompt_caches(
    run, records: list[dict], window: list[int], prompt_length, budget: int, pad_id: int, layer: int
) -> dict[int, torch.Tensor]:
    """Each pair of the window → its prompt's keys and values up to block ``layer``, as one
    (block, keys|values, head, token, dim) view; the prompts run right-padded in batches under
    the token budget."""
    from transformers import DynamicCache

    kept: dict[int, torch.Tensor] = {}
    for batch in _budget_batches(window, prompt_length, budget):
        width = max(prompt_length(pair) for pair in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for row, pair in enumerate(batch):
            ids[row, : prompt_length(pair)] = torch.tensor(records[2 * pair]["ids"][: prompt_length(pair)])
        cache = DynamicCache()
        run(input_ids=ids, cache=cache)
        # (block, keys|values, row, head, token, dim): a pair's whole cache is then one view. Read
        # through the cache's public iteration, whose items start with (keys, values) (recent 5.x
        # releases add a third field; older ones yield pairs).
        stacked = torch.stack([torch.stack((item[0], item[1])) for item in list(cache)[: layer + 1]])
        for row, pair in enumerate(batch):
            kept[pair] = stacked[:, :, row, :, : prompt_length(pair)]
    return kept


def _run_responses(run, records, batch: list[int], kept: dict, pad_id: int, response_length):
    """One response pass: the batch's prompts' cached keys and values, left-padded to the longest
    prompt (masked), and the responses right-padded, each positioned after its own prompt."""
    from transformers import DynamicCache

    prompts = torch.tensor([records[r]["prefix"] for r in batch])
    width, longest = int(prompts.max()), max(response_length(r) for r in batch)
    first = kept[batch[0] // 2]
    n_blocks, _, heads, _, dim = first.shape
    # One copy per row (all blocks' keys and values at once), not one per row and block.
    cache = first.new_zeros((n_blocks, 2, len(batch), heads, width, dim))
    for row, response in enumerate(batch):
        prompt = kept[response // 2]
        cache[:, :, row, :, width - prompt.shape[3] :] = prompt
    prompt_cache = DynamicCache()  # filled through its public ``update``, block by block
    for block in range(n_blocks):
        prompt_cache.update(cache[block, 0], cache[block, 1], block)
    mask = torch.ones((len(batch), width + longest), dtype=torch.long)
    for row, length in enumerate(prompts.tolist()):
        mask[row, : width - length] = 0  # this row's prompt's left padding
    response_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    for row, response in enumerate(batch):
        response_ids[row, : response_length(response)] = torch.tensor(
            records[response]["ids"][records[response]["prefix"] :]
        )
    return run(
        input_ids=response_ids,
        attention_mask=mask if bool((mask == 0).any()) else None,
        position_ids=prompts[:, None] + torch.arange(longest),
        cache=prompt_cache,
    )


def _stacked(pieces, norm_pieces, token_pieces, lengths, responses) -> dict[str, torch.Tensor]:
    acts = torch.cat(pieces)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    return {
        "acts": acts.contiguous(),
        "norms": torch.cat(norm_pieces),
        "token_ids": torch.cat(token_pieces),
        "offsets": offsets,
        "responses": torch.tensor(responses, dtype=torch.int64),
    }


def extract_activations(
    loaded: LoadedModel,
    pairs,
    out_dir: Path,
    config: ActivationConfig | None = None,
    progress: ProgressFn | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    agree: Callable[[int], int] | None = None,
    stop_after_shards: int | None = None,
) -> ActivationStore:
    """Write response-token activations for ``pairs`` under ``out_dir``; resume if present.

    Process ``rank`` of ``world_size`` writes every ``world_size``-th shard; ``agree`` turns this
    process's batch budget into the one all processes use (stages/distributed.agreed_minimum:
    the least, so it fits every GPU), called by every process when the budget is not given.
    ``stop_after_shards`` ends the run after that many new shards (used to test resuming)."""
    config = config or ActivationConfig()
    layer = default_layer(loaded.model) if config.layer is None else config.layer
    n_layers = len(decoder_layers(loaded.model))
    if not 0 <= layer < n_layers:
        raise AuditInputError(f"Layer {layer} does not exist; the model has blocks 0..{n_layers - 1}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / names.ACTIVATIONS_MANIFEST_FILE
    if config.tokens_per_batch is None:
        config = _with_batch_budget(config, loaded, layer, manifest_path, agree or (lambda budget: budget))
    records = tokenize_pairs(loaded.tokenizer, pairs, config)
    shards = _plan(records, config)
    _claim_folder(out_dir, _manifest(loaded, pairs, records, shards, config, layer))

    mine = [i for i in range(len(shards)) if i % world_size == rank]
    total_tokens = sum(len(records[j]["ids"]) for i in mine for j in shards[i])
    done_tokens, new_shards, started = 0, 0, time.perf_counter()
    for shard_index in mine:
        path = out_dir / names.ACTIVATION_SHARD_FILE.format(index=shard_index)
        shard_tokens = sum(len(records[j]["ids"]) for j in shards[shard_index])
        if path.exists():
            done_tokens += shard_tokens
            continue
        if stop_after_shards is not None and new_shards >= stop_after_shards:
            break

        def on_batch(n_tokens: int) -> None:
            nonlocal done_tokens
            done_tokens += n_tokens
            if progress:
                progress("activations", done_tokens, total_tokens, unit="tokens", elapsed=time.perf_counter() - started)

        extract = pair_residuals if config.share_prompts else residuals
        _save_shard(extract(loaded, records, shards[shard_index], layer, config, on_batch), path)
        new_shards += 1
    return ActivationStore(out_dir)


def _with_batch_budget(
    config: ActivationConfig, loaded: LoadedModel, layer: int, manifest_path: Path, agree: Callable[[int], int]
) -> ActivationConfig:
    """``config`` with its token budget per batch resolved once and written down: a resumed run
    keeps the first run's batches (from its manifest), whatever the GPU's free memory is now;
    a new one takes what the processes agree on (``agree``; each process proposes its own)."""
    earlier = json.loads(manifest_path.read_text())["config"] if manifest_path.exists() else {}
    budget = earlier.get("tokens_per_batch") or batch_token_budget(loaded, layer)
    return replace(config, tokens_per_batch=agree(budget))


def _claim_folder(out_dir: Path, manifest: dict) -> None:
    """Write the run's manifest into ``out_dir``, or check that the one there is this run's (so a
    resumed run adds shards only to its own activations)."""
    manifest_path = out_dir / names.ACTIVATIONS_MANIFEST_FILE
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing != manifest:
            raise ValueError(f"{out_dir} holds activations of a different run; use another folder.")
    else:
        tmp = manifest_path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest))
        tmp.replace(manifest_path)


def _save_shard(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write a shard by an atomic rename: a shard file that exists is complete."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    save_file(tensors, str(tmp))
    tmp.replace(path)


class ActivationStore:
    """Read access to a finished (or partly finished) activation folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / names.ACTIVATIONS_MANIFEST_FILE).read_text())

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    def shard_paths(self) -> list[Path]:
        return [self.folder / names.ACTIVATION_SHARD_FILE.format(index=i) for i in range(self.n_shards)]

    def is_complete(self) -> bool:
        return all(p.exists() for p in self.shard_paths())

    def load_shard(self, index: int) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.shard_paths()[index]))

    def iter_shards(self) -> Iterator[dict[str, torch.Tensor]]:
        for index in range(self.n_shards):
            yield self.load_shard(index)

    def iter_responses(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(response index, token ids, activations) for every response, shard by shard."""
        for shard in self.iter_shards():
            offsets = shard["offsets"]
            for row, response in enumerate(shard["responses"].tolist()):
                start, end = int(offsets[row]), int(offsets[row + 1])
                yield response, shard["token_ids"][start:end], shard["acts"][start:end]

    def response_lengths(self) -> np.ndarray:
        """Response tokens per response, indexed by response number."""
        lengths = np.zeros(self.manifest["n_responses"], dtype=np.int64)
        for shard in self.iter_shards():
            lengths[shard["responses"].numpy()] = (shard["offsets"][1:] - shard["offsets"][:-1]).numpy()
        return lengths

    def _norms(self) -> list[torch.Tensor]:
        """Each shard's token norms, read without its activations."""
        from safetensors import safe_open

        norms = []
        for path in self.shard_paths():
            with safe_open(str(path), framework="pt") as shard:
                norms.append(shard.get_tensor("norms"))
        return norms

    def median_norm(self) -> float:
        return float(torch.cat(self._norms()).median())

    def training_tokens(
        self,
        outlier_ratio: float = OUTLIER_NORM_RATIO,
        max_tokens: int = MAX_SAE_TRAINING_TOKENS,
        seed: int = 0,
    ) -> tuple[torch.Tensor, dict]:
        """Response-token activations (bfloat16) for the SAE: all of them minus extreme-norm
        outliers, or a seeded uniform sample of ``max_tokens`` of those, read shard by shard so
        memory holds only what is returned."""
        shard_norms = self._norms()
        norms = torch.cat(shard_norms)
        limit = float(norms.median()) * outlier_ratio
        usable = norms <= limit
        n_usable = int(usable.sum())
        chosen = usable
        if n_usable > max_tokens:
            generator = torch.Generator().manual_seed(seed)
            picked = usable.nonzero().squeeze(1)[torch.randperm(n_usable, generator=generator)[:max_tokens]]
            chosen = torch.zeros_like(usable)
            chosen[picked] = True
        pieces, start = [], 0
        for index, shard_norm in enumerate(shard_norms):
            keep = chosen[start : start + len(shard_norm)]
            start += len(shard_norm)
            if keep.any():
                pieces.append(self.load_shard(index)["acts"][keep])
        acts = torch.cat(pieces)
        return acts, {
            "n_tokens": int(norms.numel()),
            "n_outliers": int((~usable).sum()),
            "median_norm": float(norms.median()),
            "outlier_norm_limit": limit,
        }
