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
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..models import LoadedModel
from .errors import AuditInputError

ProgressFn = Callable[..., None]
MANIFEST = "manifest.json"
# A token whose residual norm exceeds this multiple of the median is an outlier (attention-sink
# positions reach ~160x the median in SmolLM2); such tokens are left out of SAE training.
OUTLIER_NORM_RATIO = 10.0


@dataclass
class ActivationConfig:
    layer: int | None = None  # block whose output (resid_post) is read; default: the middle one
    max_prompt_tokens: int = 512  # longer prompts keep their last tokens
    max_response_tokens: int = 512  # longer responses keep their first tokens
    # Padded tokens per forward pass. Small batches keep activations in cache: measured on a
    # 2-core CPU, 1-2k-token batches ran 30% faster than 8k-token ones.
    tokens_per_batch: int = 2048
    shard_size: int = 512  # responses per shard file


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
    records = []
    rendered: dict[int, list[int]] = {}  # the same prompt object is rendered once
    for index, (prompt, text) in enumerate(zip(prompts, responses)):
        key = id(prompt)
        if key not in rendered:
            messages = list(prompt) or [{"role": "user", "content": ""}]
            prefix = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            rendered[key] = tokenizer(prefix, add_special_tokens=False)["input_ids"][-config.max_prompt_tokens :]
        prefix_ids = rendered[key]
        response_ids = tokenizer(text, add_special_tokens=False)["input_ids"][: config.max_response_tokens]
        if not response_ids:  # an empty generation; keep one token so spans exist
            response_ids = tokenizer(" ", add_special_tokens=False)["input_ids"][:1]
        records.append({"response": index, "prefix": len(prefix_ids), "ids": prefix_ids + response_ids})
    return records


def tokenize_pairs(tokenizer, pairs, config: ActivationConfig) -> list[dict]:
    """Token ids per response, two per pair: index 2i is pair i's chosen, 2i+1 its rejected."""
    prompts, responses = [], []
    for prompt, chosen, rejected in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"]):
        prompts += [prompt, prompt]
        responses += [chosen, rejected]
    return tokenize_responses(tokenizer, prompts, responses, config)


def _plan(records: list[dict], config: ActivationConfig) -> list[list[int]]:
    """Responses sorted by length (stable), cut into shards of ``shard_size``."""
    order = sorted(range(len(records)), key=lambda i: (len(records[i]["ids"]), i))
    return [order[i : i + config.shard_size] for i in range(0, len(order), config.shard_size)]


def _batches(indices: list[int], records: list[dict], tokens_per_batch: int) -> Iterator[list[int]]:
    """Consecutive (length-sorted) responses while batch size x longest length fits the budget."""
    batch: list[int] = []
    longest = 0
    for index in indices:
        length = len(records[index]["ids"])
        if batch and (len(batch) + 1) * max(longest, length) > tokens_per_batch:
            yield batch
            batch, longest = [], 0
        batch.append(index)
        longest = max(longest, length)
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
) -> dict[str, torch.Tensor]:
    """The residual stream after block ``layer`` on the response tokens of ``records[indices]``,
    concatenated (bfloat16, on the CPU), with token ids, per-response offsets and indices."""
    model = loaded.model
    captured: dict[str, torch.Tensor] = {}

    def stop_here(module, args, output):
        captured["resid"] = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    handle = decoder_layers(model)[layer].register_forward_hook(stop_here)
    pad_id = loaded.tokenizer.pad_token_id or 0
    pieces, token_pieces, lengths, responses = [], [], [], []
    try:
        for batch in _batches(indices, records, config.tokens_per_batch):
            longest = max(len(records[i]["ids"]) for i in batch)
            ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
            for row, index in enumerate(batch):
                seq = records[index]["ids"]
                ids[row, : len(seq)] = torch.tensor(seq)
            # Right padding with plain causal attention: a real token never attends to the
            # padding after it, so no padding mask is needed and the fast causal kernel runs.
            try:
                _base_model(model)(input_ids=ids.to(loaded.device), use_cache=False)
            except _StopForward:
                pass
            resid = captured.pop("resid")
            for row, index in enumerate(batch):
                record = records[index]
                start, end = record["prefix"], len(record["ids"])
                pieces.append(resid[row, start:end].to("cpu", torch.bfloat16))
                token_pieces.append(torch.tensor(record["ids"][start:end], dtype=torch.int32))
                lengths.append(end - start)
                responses.append(record["response"])
            on_batch(sum(len(records[i]["ids"]) for i in batch))
    finally:
        handle.remove()
    acts = torch.cat(pieces)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    return {
        "acts": acts.contiguous(),
        "norms": acts.float().norm(dim=-1),
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
    stop_after_shards: int | None = None,
) -> ActivationStore:
    """Write response-token activations for ``pairs`` under ``out_dir``; resume if present.

    ``stop_after_shards`` ends the run after that many new shards (used to test resuming)."""
    from safetensors.torch import save_file

    config = config or ActivationConfig()
    layer = default_layer(loaded.model) if config.layer is None else config.layer
    n_layers = len(decoder_layers(loaded.model))
    if not 0 <= layer < n_layers:
        raise AuditInputError(f"Layer {layer} does not exist; the model has blocks 0..{n_layers - 1}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = tokenize_pairs(loaded.tokenizer, pairs, config)
    shards = _plan(records, config)
    manifest = _manifest(loaded, pairs, records, shards, config, layer)
    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing != manifest:
            raise ValueError(f"{out_dir} holds activations of a different run; use another folder.")
    else:
        tmp = manifest_path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest))
        tmp.replace(manifest_path)

    mine = [i for i in range(len(shards)) if i % world_size == rank]
    total_tokens = sum(len(records[j]["ids"]) for i in mine for j in shards[i])
    done_tokens, new_shards, started = 0, 0, time.perf_counter()
    for shard_index in mine:
        path = out_dir / f"shard-{shard_index:05d}.safetensors"
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

        tensors = residuals(loaded, records, shards[shard_index], layer, config, on_batch)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        save_file(tensors, str(tmp))
        tmp.replace(path)
        new_shards += 1
    return ActivationStore(out_dir)


class ActivationStore:
    """Read access to a finished (or partly finished) activation folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text())

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    def shard_paths(self) -> list[Path]:
        return [self.folder / f"shard-{i:05d}.safetensors" for i in range(self.n_shards)]

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

    def median_norm(self) -> float:
        norms = torch.cat([s["norms"] for s in self.iter_shards()])
        return float(norms.median())

    def training_tokens(self, outlier_ratio: float = OUTLIER_NORM_RATIO) -> tuple[torch.Tensor, dict]:
        """All response-token activations (bfloat16) minus extreme-norm outliers, for the SAE."""
        shards = list(self.iter_shards())
        norms = torch.cat([s["norms"] for s in shards])
        limit = float(norms.median()) * outlier_ratio
        acts = torch.cat([s["acts"][s["norms"] <= limit] for s in shards])
        return acts, {
            "n_tokens": int(norms.numel()),
            "n_outliers": int((norms > limit).sum()),
            "median_norm": float(norms.median()),
            "outlier_norm_limit": limit,
        }
