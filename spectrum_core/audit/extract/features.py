"""Per-response SAE features: encode every response token, pool per response, keep the evidence.

Token mode encodes each response token with the SAE and pools per response by max and by mean
(both kept, sparse). The strongest responses of every feature are kept with the feature's
activation on each of their tokens, for feature cards.

Difference mode follows WIMHF: pool each response's residual stream (mean over its tokens),
take chosen minus rejected per pair, add the negated differences, and train a small SAE on
those vectors. A latent that fires on d = chosen − rejected marks a concept chosen has more of;
firing on −d marks one rejected has more of. "Chosen" and "rejected" activations for the
statistics are then z(d) and z(−d).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..responses import interleave, pair_of, side_of, split_sides
from ..stats.pairs import BLOCK_NNZ, column_blocks
from .activations import ActivationStore

POOLINGS = ("max", "mean")


@dataclass
class ResponseFeatures:
    """Pooled SAE activations of both sides of every pair, plus token-level evidence."""

    sides: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]]  # pooling -> (chosen, rejected), pairs × latents
    response_tokens: np.ndarray  # (2 * n_pairs,) number of response tokens, 2i chosen, 2i+1 rejected
    # Token-level activations as coordinates: which response, which position in it, which latent.
    token_response: np.ndarray
    token_position: np.ndarray
    token_latent: np.ndarray
    token_value: np.ndarray
    token_ids: dict[int, np.ndarray]  # response index -> its token ids

    def pooled(self, pooling: str) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling is max or mean, not {pooling!r}")
        if pooling not in self.sides:
            raise ValueError(f"these features were pooled by {', '.join(self.sides)} only, not {pooling}")
        return self.sides[pooling]


@torch.no_grad()
def encode_responses(
    store: ActivationStore,
    sae,
    *,
    poolings: tuple[str, ...] = ("max",),
    evidence_top: int = 0,
    chunk: int = 8192,
    progress=None,
) -> ResponseFeatures:
    """Every response token of ``store`` through ``sae``, shard by shard, into the responses'
    pooling (each of ``poolings``: max, mean over the response's tokens).

    Memory stays bounded by the pooled matrices: token-level activations are kept only where they
    can still be card evidence, i.e. for (latent, response) whose first pooling's value is among
    the ``evidence_top`` largest of its latent seen so far (``_Evidence``); the responses
    ``top_responses(..., evidence_top)`` picks at the end are all among them. ``evidence_top=0``
    keeps none (the SAE-seed check needs only the pooling)."""
    unknown = [p for p in poolings if p not in POOLINGS]
    if unknown or not poolings:
        raise ValueError(f"poolings are max and/or mean, not {poolings!r}")
    device = next(sae.parameters()).device
    parts = _FeatureParts(store.manifest["n_responses"], sae.cfg.d_sae, tuple(poolings), evidence_top)
    done = 0
    total = store.manifest["n_response_tokens"]

    def on_tokens(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress("features", done, total, unit="tokens")

    for shard in store.iter_shards():
        _encode_shard(shard, sae, device, chunk, parts, on_tokens)
    return parts.features()


@torch.no_grad()
def encode_side(
    store: ActivationStore, sae, side: int, *, pooling: str = "max", chunk: int = 8192
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """One side's responses (0 chosen, 1 rejected) of ``store`` through ``sae``, pooled, one
    shard at a time: (the shard's pairs of that side, their pooled rows as CSR). Only that side's
    tokens are encoded, so reading both sides costs one encoding of every response, and nothing
    is held between shards: a caller that needs only sums over pairs (the SAE-seed check's
    correlations) never holds a pairs × latents matrix of both sides."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling is max or mean, not {pooling!r}")
    block = _SideBlock(store.manifest["n_responses"], sae.cfg.d_sae, pooling)  # refilled shard by shard
    device = next(sae.parameters()).device
    for shard in store.iter_shards():
        part = _side_of_shard(shard, side)
        del shard
        if not len(part["responses"]):
            continue
        _encode_shard(part, sae, device, chunk, block, lambda n: None)
        yield block.pairs, block.matrix


def _side_of_shard(shard: dict, side: int) -> dict:
    """The shard's responses of one side with their tokens, in the shard's layout."""
    offsets, responses = shard["offsets"].numpy(), shard["responses"].numpy()
    lengths = offsets[1:] - offsets[:-1]
    keep = side_of(responses) == side
    tokens = torch.from_numpy(np.repeat(keep, lengths))
    kept = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=kept[1:])
    return {
        "acts": shard["acts"][tokens],
        "token_ids": shard["token_ids"][tokens],
        "offsets": torch.from_numpy(kept),
        "responses": torch.from_numpy(responses[keep]),
    }


class _SideBlock:
    """What ``_encode_shard`` writes, for one side's responses of the last shard encoded: their
    pooled rows under one pooling (new matrices each shard), and no card evidence."""

    def __init__(self, n_responses: int, d_sae: int, pooling: str):
        self.d_sae, self.poolings = d_sae, (pooling,)
        self.response_tokens = np.zeros(n_responses, dtype=np.int64)
        self.evidence = _Evidence(d_sae, 0)
        self.pairs = np.zeros(0, dtype=np.int64)
        self.matrix = sp.csr_matrix((0, d_sae), dtype=np.float32)

    def add_shard(self, responses: np.ndarray, pooled: dict[str, torch.Tensor]) -> None:
        self.pairs = pair_of(responses).astype(np.int64)
        self.matrix = sp.csr_matrix(pooled[self.poolings[0]].numpy())


class _Evidence:
    """Token-level activations of the (latent, response) cells that can still be among their
    latent's ``top`` strongest responses.

    Pooled values of a response are final once its shard is encoded, so a latent's ``top``-th
    largest value so far only rises; a cell below it can never be picked, and is dropped. Cells
    equal to it are kept (ties are broken later, by side and pair, in ``top_responses``)."""

    def __init__(self, d_sae: int, top: int):
        self.top = top
        self.best = torch.zeros(top, d_sae)  # the top largest pooled values per latent so far
        self.resp: list[np.ndarray] = []
        self.pos: list[np.ndarray] = []
        self.lat: list[np.ndarray] = []
        self.val: list[np.ndarray] = []
        self.score: list[np.ndarray] = []  # the cell's pooled value, to drop it when outranked
        self.token_ids: dict[int, np.ndarray] = {}

    def add_shard(self, pooled: torch.Tensor, responses: np.ndarray, tokens: dict, token_ids: dict) -> None:
        """``pooled``: the shard's responses × latents; ``tokens``: its token cells (row in the
        shard, position, latent, value); ``token_ids``: its responses' token ids."""
        if self.top == 0:
            return
        self.best = torch.cat([self.best, pooled]).topk(self.top, dim=0).values
        if not len(tokens["row"]):
            return
        score = pooled[torch.from_numpy(tokens["row"]), torch.from_numpy(tokens["latent"])].numpy()
        self.resp.append(responses[tokens["row"]])
        self.pos.append(tokens["position"])
        self.lat.append(tokens["latent"])
        self.val.append(tokens["value"])
        self.score.append(score)
        self.token_ids.update(token_ids)
        self._prune()

    def _prune(self) -> None:
        threshold = self.best[-1].numpy()
        lat, score = np.concatenate(self.lat), np.concatenate(self.score)
        keep = (score > 0) & (score >= threshold[lat])
        self.lat, self.score = [lat[keep]], [score[keep]]
        for name in ("resp", "pos", "val"):
            setattr(self, name, [np.concatenate(getattr(self, name))[keep]])
        kept = set(np.unique(self.resp[0]).tolist())
        self.token_ids = {r: ids for r, ids in self.token_ids.items() if r in kept}

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.resp:
            empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            return empty_i, empty_i.astype(np.int32), empty_i.astype(np.int32), empty_f
        return self.resp[0], self.pos[0], self.lat[0], self.val[0]


class _FeatureParts:
    """What ``encode_responses`` collects shard by shard, assembled at the end by :meth:`features`.

    Each shard's pooled values are kept as one small CSR block per side and pooling (its rows in
    the shard's order, with their pair numbers), and the blocks are stacked and put in pair order
    once at the end: the pooled matrices are the only thing that grows with the data (holding
    per-nonzero coordinates until the end took three times their size at 100k pairs)."""

    def __init__(self, n_responses: int, d_sae: int, poolings: tuple[str, ...], evidence_top: int):
        self.n_responses, self.d_sae, self.poolings = n_responses, d_sae, poolings
        self.response_tokens = np.zeros(n_responses, dtype=np.int64)
        self.evidence = _Evidence(d_sae, evidence_top)
        self.pairs: dict[int, list[np.ndarray]] = {0: [], 1: []}  # side -> each block's pair numbers
        self.blocks: dict[tuple[str, int], list[sp.csr_matrix]] = {(p, s): [] for p in poolings for s in (0, 1)}

    def add_shard(self, responses: np.ndarray, pooled: dict[str, torch.Tensor]) -> None:
        """The shard's pooled values (responses × latents per pooling) as CSR blocks per side."""
        for side in (0, 1):
            rows = np.flatnonzero(side_of(responses) == side)
            self.pairs[side].append(pair_of(responses[rows]).astype(np.int64))
            index = torch.from_numpy(rows)
            for pooling in self.poolings:
                self.blocks[(pooling, side)].append(sp.csr_matrix(pooled[pooling][index].numpy()))

    def features(self) -> ResponseFeatures:
        n_pairs = self.n_responses // 2
        sides = {}
        for pooling in self.poolings:
            sides[pooling] = (self._side(pooling, 0, n_pairs), self._side(pooling, 1, n_pairs))
        token_response, token_position, token_latent, token_value = self.evidence.columns()
        return ResponseFeatures(
            sides=sides,
            response_tokens=self.response_tokens,
            token_response=token_response,
            token_position=token_position,
            token_latent=token_latent,
            token_value=token_value,
            token_ids=self.evidence.token_ids,
        )

    def _side(self, pooling: str, side: int, n_pairs: int) -> sp.csr_matrix:
        """One side's blocks stacked, in pair order (a pair no shard holds stays an empty row)."""
        blocks = self.blocks.pop((pooling, side))
        blocks.append(sp.csr_matrix((1, self.d_sae), dtype=np.float32))  # the empty row
        stacked = sp.vstack(blocks, format="csr")
        del blocks
        pairs = np.concatenate(self.pairs[side]) if self.pairs[side] else np.zeros(0, np.int64)
        row_of_pair = np.full(n_pairs, len(pairs), dtype=np.int64)
        row_of_pair[pairs] = np.arange(len(pairs))
        return stacked[row_of_pair]


def _encode_shard(shard: dict, sae, device, chunk: int, parts: _FeatureParts | _SideBlock, on_tokens) -> None:
    """One shard's tokens through the SAE, ``chunk`` tokens at a time, into ``parts``: its
    responses' lengths and pooled values, and the token cells that can still be card evidence."""
    d_sae = parts.d_sae
    acts, offsets, responses = shard["acts"], shard["offsets"], shard["responses"].numpy()
    lengths = (offsets[1:] - offsets[:-1]).numpy()
    owner = np.repeat(np.arange(len(responses)), lengths)  # row within shard per token
    position = np.arange(len(owner)) - np.repeat(offsets[:-1].numpy(), lengths)
    parts.response_tokens[responses] = lengths
    pooled_max = torch.zeros(len(responses), d_sae)
    pooled_sum = torch.zeros(len(responses), d_sae)
    cells: dict[str, list[np.ndarray]] = {"row": [], "position": [], "latent": [], "value": []}
    for start in range(0, acts.shape[0], chunk):
        x = acts[start : start + chunk].float().to(device)
        features = sae.encode(x).float().cpu()
        token_index, latent = features.nonzero(as_tuple=True)
        values = features[token_index, latent]
        global_token = token_index.numpy() + start
        shard_row = torch.from_numpy(owner[global_token])
        flat = shard_row * d_sae + latent
        pooled_max.view(-1).scatter_reduce_(0, flat, values, reduce="amax")
        pooled_sum.view(-1).index_add_(0, flat, values)
        if parts.evidence.top:
            cells["row"].append(owner[global_token])
            cells["position"].append(position[global_token].astype(np.int32))
            cells["latent"].append(latent.numpy().astype(np.int32))
            cells["value"].append(values.numpy().astype(np.float32))
        on_tokens(x.shape[0])
    pooled_mean = pooled_sum / torch.from_numpy(np.maximum(lengths, 1)).float()[:, None]
    pooled = {"max": pooled_max, "mean": pooled_mean}
    if parts.evidence.top:
        token_ids = {
            # A copy, not a view: a view kept the whole shard (its activations too) alive for as long
            # as the response stayed card evidence, so at 100k pairs nearly every shard stayed in memory.
            int(response): shard["token_ids"][offsets[row] : offsets[row + 1]].numpy().copy()
            for row, response in enumerate(responses.tolist())
        }
        dtypes = {"row": np.int64, "position": np.int32, "latent": np.int32, "value": np.float32}
        tokens = {
            name: np.concatenate(pieces) if pieces else np.zeros(0, dtypes[name]) for name, pieces in cells.items()
        }
        parts.evidence.add_shard(pooled[parts.poolings[0]], responses, tokens, token_ids)
    parts.add_shard(responses, pooled)


@torch.no_grad()
def encode_selected(
    store: ActivationStore, sae, responses: np.ndarray, latents: np.ndarray, chunk: int = 8192
) -> dict[int, tuple[np.ndarray, sp.csr_matrix]]:
    """For each of ``responses``: its token ids and the activations of ``latents`` on each of its
    tokens (tokens × len(latents), sparse; no latents: token ids only, ``sae`` unused). Every
    shard is read once and only those responses' tokens are encoded: cards need token evidence
    for a few thousand responses, which the streaming encoding (``_Evidence``) keeps only per
    latent, not per family."""
    wanted = set(np.asarray(responses, dtype=np.int64).tolist())
    columns = torch.from_numpy(np.asarray(latents, dtype=np.int64))
    out: dict[int, tuple[np.ndarray, sp.csr_matrix]] = {}
    for shard in store.iter_shards() if wanted else ():
        offsets = shard["offsets"].numpy()
        rows = [row for row, r in enumerate(shard["responses"].tolist()) if r in wanted]
        if not rows:
            continue
        tokens = torch.from_numpy(np.concatenate([np.arange(offsets[row], offsets[row + 1]) for row in rows]))
        encoded = torch.zeros(len(tokens), len(columns))
        for s in range(0, len(tokens), chunk) if len(columns) else ():
            x = shard["acts"][tokens[s : s + chunk]].float().to(next(sae.parameters()).device)
            encoded[s : s + chunk] = sae.encode(x).float().cpu()[:, columns]
        matrix = sp.csr_matrix(encoded.numpy())
        at = 0  # the row's first token in ``matrix``
        for row in rows:
            start, end = int(offsets[row]), int(offsets[row + 1])
            ids = shard["token_ids"][start:end].numpy().copy()  # a view would keep the shard alive
            out[int(shard["responses"][row])] = (ids, matrix[at : at + end - start])
            at += end - start
    return out


def pooled_residuals(store: ActivationStore) -> torch.Tensor:
    """Mean residual over each response's tokens: (2 * n_pairs, d_model), float32."""
    pooled = torch.zeros(store.manifest["n_responses"], store.manifest["d_model"])
    for response, _, acts in store.iter_responses():
        pooled[response] = acts.float().mean(0)
    return pooled


def difference_vectors(pooled: torch.Tensor) -> torch.Tensor:
    """chosen − rejected per pair, stacked with the negations (so the SAE sees both signs)."""
    chosen, rejected = split_sides(pooled)
    delta = chosen - rejected
    return torch.cat([delta, -delta])


@torch.no_grad()
def encode_differences(pooled: torch.Tensor, sae, chunk: int = 8192) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(z(d), z(−d)) per pair, as the "chosen" and "rejected" activations of difference mode;
    encoded ``chunk`` pairs at a time, so only one chunk is ever dense."""
    chosen, rejected = split_sides(pooled)
    delta = chosen - rejected
    device = next(sae.parameters()).device
    plus, minus = [], []
    for start in range(0, delta.shape[0], chunk):
        d = delta[start : start + chunk].to(device)
        plus.append(sp.csr_matrix(sae.encode(d).float().cpu().numpy()))
        minus.append(sp.csr_matrix(sae.encode(-d).float().cpu().numpy()))
    return sp.vstack(plus, format="csr"), sp.vstack(minus, format="csr")


def column_slices(chosen: sp.csr_matrix, rejected: sp.csr_matrix, target_nnz: int = BLOCK_NNZ):
    """(first column, chosen block, rejected block) over consecutive column ranges holding about
    ``target_nnz`` nonzeros of both sides, so work that sorts nonzeros per column never holds
    more than one block's temporaries (at 100k pairs, sorting every nonzero at once was the
    audit's peak memory)."""
    counts = np.bincount(chosen.indices, minlength=chosen.shape[1]) + np.bincount(
        rejected.indices, minlength=rejected.shape[1]
    )
    for c0, c1 in column_blocks(np.concatenate([[0], np.cumsum(counts)]), target_nnz):
        yield c0, chosen[:, c0:c1], rejected[:, c0:c1]


def top_responses(
    chosen: sp.csr_matrix, rejected: sp.csr_matrix, n_top: int, block_nnz: int = BLOCK_NNZ
) -> list[tuple[int, int, float]]:
    """(feature, response index, activation) for the ``n_top`` strongest responses of every
    feature, responses numbered 2i (chosen of pair i) and 2i+1 (rejected); column block by
    column block (``column_slices``)."""
    out: list[tuple[int, int, float]] = []
    for c0, chosen_block, rejected_block in column_slices(sp.csr_matrix(chosen), sp.csr_matrix(rejected), block_nnz):
        both = interleave(chosen_block, rejected_block).tocoo()
        response = both.row
        # by feature, then activation, ties chosen side first, then by pair (as every ranking)
        order = np.lexsort((pair_of(response), side_of(response), -both.data, both.col))
        cols, resp, vals = both.col[order], response[order], both.data[order]
        first = np.searchsorted(cols, cols, side="left")
        keep = (np.arange(len(cols)) - first) < n_top
        out += zip((cols[keep] + c0).tolist(), resp[keep].tolist(), vals[keep].tolist())
    return out


def token_activations(features: ResponseFeatures, wanted: list[tuple[int, int, float]]) -> dict:
    """For each (feature, response) in ``wanted``: the feature's activation on every token of the
    response (zeros where it does not fire)."""
    n_responses = len(features.response_tokens)
    keys = np.array([f * n_responses + r for f, r, _ in wanted], dtype=np.int64)
    token_keys = features.token_latent.astype(np.int64) * n_responses + features.token_response
    hit = np.isin(token_keys, keys)
    result = {(f, r): np.zeros(features.response_tokens[r], dtype=np.float32) for f, r, _ in wanted}
    for key, pos, value in zip(
        token_keys[hit].tolist(), features.token_position[hit].tolist(), features.token_value[hit].tolist()
    ):
        result[(key // n_responses, key % n_responses)][pos] = value
    return result
