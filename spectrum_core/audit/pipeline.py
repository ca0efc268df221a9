"""The audit: activations → SAE → per-response features → statistics → labels → artifacts.

``run_audit`` writes into one folder:

- ``concepts.parquet``: one row per concept (SAE feature of either mode, or probe) with every
  statistic, its label and rank;
- ``pair_features.parquet``: the per-pair matrix in long form, one row per (pair, concept) where
  either side is nonzero: chosen activation, rejected activation, Δ;
- ``feature_cards.parquet``: for each SAE feature its strongest responses, with the feature's
  activation on every token;
- ``sae/`` (and ``sae_difference/``): the SAEs in sae-lens's inference format;
- ``report.json``: configuration, timings per stage, SAE quality, held-out AUCs, counts.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .. import constants as names
from ..models import LoadedModel, load_model
from ..progress import Progress
from . import labels as labelling
from .activations import default_layer, extract_activations, hook_name
from .baselines import agreement_strength, length_baseline
from .config import MODES, AuditConfig
from .detection import DETECTION_HELD_OUT, detection_score
from .errors import AuditInputError
from .families import MAX_CANDIDATES, MIN_SIMILARITY, effect_size, family_scores, find_families, representatives
from .features import (
    ResponseFeatures,
    difference_vectors,
    encode_differences,
    encode_responses,
    pooled_residuals,
    token_activations,
    top_responses,
)
from .local_labeller import LocalLabeler
from .power import power_summary, verdict
from .probes import PROBES, compute_probes, nearest_probes
from .robustness import seed_stability, split_half_agreement
from .sae import SAETrainingConfig, decoder_directions, evaluate_sae, load_pretrained_sae, train_sae
from .stats import adjust_pvalues, feature_statistics, joint_model, rank_concepts
from .topics import find_topics, topic_leans

logger = logging.getLogger(__name__)
NGRAM_CANDIDATES = 30  # contrastive n-grams scored per concept before function words are dropped
SNIPPET_WORDS = 16  # words quoted from a response when there are no token activations to centre on
TOP_FAMILIES = 10  # the families whose members' share of the joint model's AUC gain is reported
TOPIC_FAMILIES = 200  # the best-ranked families whose lean per topic is kept (a dense pairs × families array)


@dataclass
class AuditResult:
    folder: Path
    concepts: pd.DataFrame
    report: dict = field(default_factory=dict)


def sample_pairs(pairs: pd.DataFrame, max_pairs: int | None, seed: int) -> pd.DataFrame:
    """A seeded random sample of ``max_pairs`` pairs, kept in file order; all when None."""
    if max_pairs is None or max_pairs >= len(pairs):
        return pairs.reset_index(drop=True)
    chosen = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
    return pairs.iloc[chosen].reset_index(drop=True)


def difference_width(n_pairs: int) -> int:
    """Difference mode sees one vector per pair (twice, with signs): a few dozen to a few
    hundred latents, about one per 40 training vectors."""
    return int(min(1024, max(32, 2 ** round(math.log2(max(2 * n_pairs / 40, 1))))))


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str):
        timer = self

        class _Stage:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[stage] = round(timer.seconds.get(stage, 0.0) + time.perf_counter() - self.started, 2)

        return _Stage()


def _token_strings(tokenizer, ids: np.ndarray, cache: dict[int, str]) -> list[str]:
    out = []
    for token_id in ids.tolist():
        if token_id not in cache:
            cache[token_id] = tokenizer.decode([token_id])
        out.append(cache[token_id])
    return out


def _texts(pairs: pd.DataFrame, responses: list[int]) -> list[str]:
    return [pairs["chosen"].iat[r // 2] if r % 2 == 0 else pairs["rejected"].iat[r // 2] for r in responses]


def _mode_table(
    mode: str,
    chosen: sp.csr_matrix,
    rejected: sp.csr_matrix,
    lengths: tuple,
    train_mask: np.ndarray,
    config: AuditConfig,
) -> tuple[pd.DataFrame, dict]:
    table, joint = feature_statistics(
        chosen, rejected, lengths[0], lengths[1], train_mask, seed=config.seed, correction=config.correction
    )
    table = table.reset_index(drop=True)
    table["split_half_direction"], table["split_half_significant"] = split_half_agreement(
        chosen - rejected, config.split_halves, config.seed, alpha=config.fdr_threshold
    )
    table.insert(0, "feature", np.arange(len(table)))
    table.insert(0, "mode", mode)
    table.insert(0, "kind", mode if mode in ("probe", "family") else "sae")
    return table, joint


def _cards(
    mode: str, features: ResponseFeatures | None, chosen, rejected, pairs, tokenizer, n_top: int
) -> pd.DataFrame:
    """Rows (concept_id, rank, pair_id, side, activation, tokens, token_activations)."""
    wanted = top_responses(chosen, rejected, n_top)
    per_token = token_activations(features, wanted) if features is not None else {}
    decode_cache: dict[int, str] = {}
    rows = []
    rank_in_feature: dict[int, int] = {}
    for feature, response, value in wanted:
        rank_in_feature[feature] = rank_in_feature.get(feature, 0) + 1
        tokens, acts = [], []
        if features is not None:
            tokens = _token_strings(tokenizer, features.token_ids[response], decode_cache)
            acts = per_token[(feature, response)].tolist()
        rows.append(
            {
                "concept_id": f"{mode}:{feature}",
                "rank": rank_in_feature[feature],
                "pair_id": pairs["pair_id"].iat[response // 2],
                "side": "chosen" if response % 2 == 0 else "rejected",
                "activation": float(value),
                "tokens": tokens,
                "token_activations": acts,
            }
        )
    return pd.DataFrame(
        rows, columns=["concept_id", "rank", "pair_id", "side", "activation", "tokens", "token_activations"]
    )


def _long_matrix(
    concept_prefix: str,
    chosen: sp.csr_matrix,
    rejected: sp.csr_matrix,
    pair_ids: np.ndarray,
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Nonzero (pair, concept) cells of chosen and rejected, with Δ."""
    union = (abs(chosen) + abs(rejected)).tocoo()
    rows, cols = union.row, union.col
    c = np.asarray(chosen[rows, cols]).ravel()
    r = np.asarray(rejected[rows, cols]).ravel()
    concept = (
        np.array([f"{concept_prefix}:{n}" for n in names])[cols]
        if names is not None
        else np.char.add(f"{concept_prefix}:", cols.astype(str))
    )
    return pd.DataFrame(
        {
            "pair_id": pair_ids[rows],
            "concept_id": concept,
            "chosen": c.astype(np.float32),
            "rejected": r.astype(np.float32),
            "delta": (c - r).astype(np.float32),
        }
    )


@dataclass
class AuditState:
    """What the audit's steps have produced so far; each step reads earlier fields and fills its own."""

    pairs: pd.DataFrame
    config: AuditConfig
    out_dir: Path
    activations_dir: Path
    progress: Progress | None = None
    distributed: Any = None
    loaded: LoadedModel | None = None
    stopped: bool = False  # set by a helper process of a multi-process run once its extraction is done
    # model and layer
    layer: int = -1
    hook: str = ""
    device: str = "cpu"
    pretrained: Any = None  # a sae-lens SAE loaded instead of trained (token mode)
    token_sae: Any = None  # the token mode's SAE, trained or loaded
    # activations
    store: Any = None  # ActivationStore
    train_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # SAEs and the per-response matrices: mode -> (chosen, rejected), pairs × concepts
    features: ResponseFeatures | None = None
    pooled: torch.Tensor | None = None  # pooled residuals (difference mode)
    token_sae_config: SAETrainingConfig | None = None
    difference_sae_config: SAETrainingConfig | None = None
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]] = field(default_factory=dict)
    decoders: dict[str, np.ndarray] = field(default_factory=dict)  # mode -> decoder directions (latents × d_model)
    probe_delta: pd.DataFrame | None = None
    # statistics and what follows
    joints: dict[str, dict] = field(default_factory=dict)
    concepts: pd.DataFrame = field(default_factory=pd.DataFrame)
    topics: Any = None  # topics.Topics
    leans: pd.DataFrame | None = None
    cards: pd.DataFrame = field(default_factory=pd.DataFrame)
    report: dict = field(default_factory=dict)

    @property
    def modes(self) -> list[str]:
        return [m for m in self.config.modes if m in MODES]

    @property
    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Response lengths in tokens, chosen and rejected (responses are stored interleaved)."""
        lengths = self.features.response_tokens if self.features is not None else self.store.response_lengths()
        return lengths[0::2].astype(float), lengths[1::2].astype(float)


def _load_model(state: AuditState) -> None:
    config = state.config
    state.loaded = loaded = state.loaded or load_model(config.model, device=config.device, dtype=config.dtype)
    state.layer = default_layer(loaded.model) if config.layer is None else config.layer
    state.hook, state.device = hook_name(state.layer), loaded.device
    if "token" in state.modes and config.sae != "train":
        # Check a pretrained SAE fits this model and layer before spending time on activations.
        state.pretrained = load_pretrained_sae(
            config.sae, d_model=int(loaded.model.config.hidden_size), hook=state.hook, device=state.device
        )


def _extract(state: AuditState) -> None:
    distributed, config = state.distributed, state.config
    rank, world = (distributed.process_index, distributed.num_processes) if distributed else (0, 1)
    assert state.loaded is not None
    state.store = store = extract_activations(
        state.loaded,
        state.pairs,
        state.activations_dir,
        replace(config.activation_config(), layer=state.layer),
        state.progress,
        rank=rank,
        world_size=world,
    )
    if distributed is not None:
        distributed.wait_for_everyone()
        if not distributed.is_main_process:
            state.stopped = True
            return
    state.train_mask = train_mask = (state.pairs["split"] == "train").to_numpy()
    state.report = {
        "config": config.identity(),
        "model_path": str(state.loaded.path),
        "layer": state.layer,
        "hook_name": state.hook,
        "n_pairs": len(state.pairs),
        "n_train": int(train_mask.sum()),
        "n_held_out": int((~train_mask).sum()),
        "activations": {
            **{k: store.manifest[k] for k in ("n_tokens_total", "n_response_tokens", "n_responses", "d_model")},
            "tokens_per_batch": store.manifest["config"]["tokens_per_batch"],  # resolved (GPU: from free memory)
        },
        "sae": {},
        "joint_models": {},
        "warnings": [],
    }


def _token_sae(state: AuditState) -> None:
    config, store = state.config, state.store
    state.token_sae_config = SAETrainingConfig(
        width=config.sae_width, k=config.sae_k, training_tokens=config.sae_training_tokens, seed=config.seed
    )
    tokens, token_info = store.training_tokens()
    if config.sae == "train":
        sae, metrics = train_sae(
            tokens,
            state.out_dir / names.TOKEN_SAE_DIR,
            state.token_sae_config,
            model_name=config.model,
            hook=state.hook,
            device=state.device,
            progress=state.progress,
        )
        metrics.update(token_info)
    else:
        assert state.pretrained is not None  # loaded with the model whenever the SAE is not trained here
        sae = state.pretrained
        sae.save_model(str(state.out_dir / names.TOKEN_SAE_DIR))
        metrics = evaluate_sae(sae, tokens)
        metrics.update(token_info, source=config.sae)
    del tokens
    state.token_sae = sae
    state.report["sae"]["token"] = metrics
    state.decoders["token"] = decoder_directions(sae)


def _encode(state: AuditState) -> None:
    state.features = encode_responses(state.store, state.token_sae, progress=state.progress)
    state.mode_data["token"] = state.features.pooled(state.config.pooling)


def _difference_sae(state: AuditState) -> None:
    state.pooled = pooled = pooled_residuals(state.store)
    vectors = difference_vectors(pooled)
    width = difference_width(len(state.pairs))
    state.difference_sae_config = SAETrainingConfig(
        width=width,
        k=max(2, min(8, width // 16)),
        batch_size=256,
        training_tokens=max(50_000, 50 * len(vectors)),
        seed=state.config.seed,
    )
    diff_sae, diff_metrics = train_sae(
        vectors,
        state.out_dir / names.DIFFERENCE_SAE_DIR,
        state.difference_sae_config,
        model_name=state.config.model,
        hook=state.hook + ".pooled_difference",
        device=state.device,
        progress=state.progress,
    )
    state.report["sae"]["difference"] = diff_metrics
    state.decoders["difference"] = decoder_directions(diff_sae)
    state.mode_data["difference"] = encode_differences(pooled, diff_sae)


def _probes(state: AuditState) -> None:
    chosen_len, rejected_len = state.lengths
    probe_chosen = compute_probes(list(state.pairs["chosen"]), chosen_len)
    probe_rejected = compute_probes(list(state.pairs["rejected"]), rejected_len)
    state.probe_delta = probe_chosen - probe_rejected
    state.mode_data["probe"] = (
        sp.csr_matrix(probe_chosen.to_numpy(np.float32)),
        sp.csr_matrix(probe_rejected.to_numpy(np.float32)),
    )


def _statistics(state: AuditState) -> None:
    config, progress, mode_data = state.config, state.progress, state.mode_data
    tables: list[pd.DataFrame] = []
    for mode, (chosen, rejected) in mode_data.items():
        if progress:
            progress("statistics", len(tables), len(mode_data), unit="modes")
        table, state.joints[mode] = _mode_table(mode, chosen, rejected, state.lengths, state.train_mask, config)
        if mode == "probe":
            table["concept_id"] = [f"probe:{name}" for name in PROBES]
            table["label"] = list(PROBES)
            table["description"] = [p.description for p in PROBES.values()]
        else:
            table["concept_id"] = [f"{mode}:{j}" for j in range(len(table))]
            table["nearest_probe"], table["probe_r"] = nearest_probes(chosen - rejected, state.probe_delta)
        tables.append(table)
    if progress:
        progress("statistics", len(mode_data), len(mode_data), unit="modes")
    concepts = pd.concat(tables, ignore_index=True)
    # One family of hypotheses: q-values across every concept of every mode.
    concepts["q_value"] = adjust_pvalues(concepts["p_sign"].to_numpy(), method=config.correction)
    state.concepts = agreement_strength(rank_concepts(concepts, alpha=config.fdr_threshold), len(state.pairs))


def _families(state: AuditState) -> None:
    assert state.probe_delta is not None
    state.concepts, family_matrices, state.report["families"] = _add_families(
        state.concepts,
        state.mode_data,
        state.decoders,
        state.lengths,
        state.train_mask,
        state.probe_delta,
        state.config,
        state.progress,
    )
    state.mode_data["family"] = family_matrices


def _sae_seeds(state: AuditState) -> None:
    retrained = {"token": state.token_sae_config} if "token" in state.modes else {}
    if "difference" in state.modes:
        retrained["difference"] = state.difference_sae_config
    state.concepts = _seed_stability(
        state.concepts,
        state.mode_data,
        {mode: c for mode, c in retrained.items() if c is not None},
        state.store,
        state.pooled,
        state.config,
        hook=state.hook,
        device=state.device,
        progress=state.progress,
    )


def _topics(state: AuditState) -> None:
    state.topics = topics = find_topics(
        list(state.pairs["prompt"]), state.config.topics, state.config.seed, device=state.device
    )
    family_rows = state.concepts[state.concepts["kind"] == "family"].head(TOPIC_FAMILIES)
    family_chosen, family_rejected = state.mode_data["family"]
    family_delta = (family_chosen - family_rejected).toarray()[:, family_rows["feature"].to_numpy(dtype=np.int64)]
    state.leans = topic_leans(family_delta, list(family_rows["concept_id"]), topics)
    state.report["topics"] = topics.table().to_dict(orient="records")


def _cards_step(state: AuditState) -> None:
    chosen_len, rejected_len = state.lengths
    report = state.report
    report["joint_models"] = {
        mode: {k: v for k, v in joint.items() if not isinstance(v, np.ndarray)} for mode, joint in state.joints.items()
    }
    report["baselines"] = {
        "length": length_baseline(chosen_len, rejected_len, state.train_mask, state.config.seed).to_dict()
    }
    assert state.loaded is not None
    card_tables = [
        _cards(
            mode,
            state.features if mode == "token" else None,
            *state.mode_data[mode],
            state.pairs,
            state.loaded.tokenizer,
            state.config.top_examples,
        )
        for mode in ("family", "token", "difference")
        if mode in state.mode_data
    ]
    state.cards = pd.concat(card_tables, ignore_index=True) if card_tables else pd.DataFrame()


def _labels(state: AuditState) -> None:
    state.concepts = _label_concepts(
        state.concepts,
        state.cards,
        state.pairs,
        state.mode_data,
        state.config,
        state.out_dir,
        state.progress,
        state.report["warnings"],
    )


def _write(state: AuditState) -> None:
    out_dir, mode_data, pairs = state.out_dir, state.mode_data, state.pairs
    pair_ids = pairs["pair_id"].to_numpy()
    long_parts = [_long_matrix(mode, *mode_data[mode], pair_ids) for mode in mode_data if mode != "probe"]
    long_parts.append(_long_matrix("probe", *mode_data["probe"], pair_ids, names=list(PROBES)))
    pd.concat(long_parts, ignore_index=True).to_parquet(out_dir / names.PAIR_FEATURES_FILE, index=False)
    state.cards.to_parquet(out_dir / names.FEATURE_CARDS_FILE, index=False)
    state.concepts.to_parquet(out_dir / names.CONCEPTS_FILE, index=False)
    audited = pairs[["pair_id", "split"]]
    if state.topics is not None:
        assert state.leans is not None
        audited = audited.assign(topic=state.topics.topic)
        state.topics.table().to_parquet(out_dir / names.TOPICS_FILE, index=False)
        state.leans.to_parquet(out_dir / names.TOPIC_LEANS_FILE, index=False)
    audited.to_parquet(out_dir / names.AUDITED_PAIRS_FILE, index=False)


@dataclass(frozen=True)
class Step:
    """One named step of the audit: ``run`` fills fields of the state; ``when`` says whether it applies."""

    name: str  # its key in the report's timings
    run: Callable[[AuditState], None]
    when: Callable[[AuditState], bool] = lambda state: True


# The audit, top to bottom. Adding a step: write a function of the state, add a line here.
STEPS: tuple[Step, ...] = (
    Step("load_model", _load_model),
    Step("activations", _extract),
    Step("sae", _token_sae, when=lambda s: "token" in s.modes),
    Step("features", _encode, when=lambda s: "token" in s.modes),
    Step("difference_sae", _difference_sae, when=lambda s: "difference" in s.modes),
    Step("probes", _probes),
    Step("statistics", _statistics),
    Step("families", _families),
    Step("sae_seeds", _sae_seeds, when=lambda s: bool(s.config.sae_seeds) and s.config.sae == "train"),
    Step("topics", _topics, when=lambda s: bool(s.config.topics)),
    Step("cards", _cards_step),
    Step("labels", _labels),
    Step("write", _write),
)


def run_audit(
    pairs: pd.DataFrame,
    config: AuditConfig,
    out_dir: Path,
    *,
    activations_dir: Path,
    loaded: LoadedModel | None = None,
    progress: Progress | None = None,
    distributed=None,
) -> AuditResult | None:
    """Run the whole audit into ``out_dir``: each of ``STEPS`` in order, timed by name. With
    ``distributed`` (accelerate's PartialState) each process extracts its share of the shards;
    only the main process goes on past the extraction, and the others return None."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = sample_pairs(pairs, config.max_pairs, config.seed)
    if len(pairs) < 10:
        raise AuditInputError(f"An audit needs at least 10 pairs; got {len(pairs)}.")
    state = AuditState(pairs, config, out_dir, Path(activations_dir), progress, distributed, loaded)
    if not state.modes:
        raise AuditInputError(f"modes must include one of {MODES}; got {config.modes}")
    timer = _Timer()
    for step in STEPS:
        if step.when(state):
            with timer(step.name):
                step.run(state)
        if state.stopped:
            return None
    _write_report(state, timer.seconds)
    return AuditResult(out_dir, state.concepts, state.report)


def _write_report(state: AuditState, timings: dict[str, float]) -> None:
    """Counts, the verdict and power are about single concepts; families have their own q-values
    (report["families"])."""
    report, concepts, threshold = state.report, state.concepts, state.config.fdr_threshold
    report["timings"] = timings
    single_modes = [mode for mode in state.mode_data if mode != "family"]
    report["n_concepts"] = {mode: int((concepts["mode"] == mode).sum()) for mode in single_modes}
    report["n_significant"] = {
        mode: int(((concepts["mode"] == mode) & (concepts["q_value"] < threshold)).sum()) for mode in single_modes
    }
    report["families"]["n_significant_families"] = int(
        ((concepts["kind"] == "family") & (concepts["q_value"] < threshold)).sum()
    )
    summary = power_summary(concepts[concepts["kind"] != "family"], len(state.pairs), threshold)
    report["fdr_threshold"] = threshold
    report["power"] = summary.to_dict()
    report["verdict"] = verdict(summary)
    (state.out_dir / names.REPORT_FILE).write_text(json.dumps(report, indent=1, default=float))


def _add_families(
    concepts: pd.DataFrame,
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    decoders: dict[str, np.ndarray],
    lengths: tuple[np.ndarray, np.ndarray],
    train_mask: np.ndarray,
    probe_delta: pd.DataFrame,
    config: AuditConfig,
    progress,
) -> tuple[pd.DataFrame, tuple[sp.csr_matrix, sp.csr_matrix], dict]:
    """Group the best-ranked concepts of every mode into families (``families.py``), test each
    family's score like a single concept, and put the families, ranked among themselves, above
    the concepts. Member rows gain ``family`` (its family's concept id, "" for none) and
    ``family_weight`` (1 / the member's standard deviation: the family score is the weighted sum).
    Returns the table, the families' (chosen, rejected) score matrices and the report's summary."""
    if progress:
        progress("families", 0, 1, unit="steps")
    modes = list(mode_data)
    offsets = dict(zip(modes, np.cumsum([0] + [mode_data[m][0].shape[1] for m in modes[:-1]]).tolist()))
    chosen = sp.hstack([mode_data[m][0] for m in modes]).tocsr()
    rejected = sp.hstack([mode_data[m][1] for m in modes]).tocsr()
    column_mode = np.concatenate([np.full(mode_data[m][0].shape[1], m, dtype=object) for m in modes])
    column = np.array([offsets[m] + int(f) for m, f in zip(concepts["mode"], concepts["feature"])], dtype=np.int64)
    decoder_columns = {m: (offsets[m] + np.arange(len(w)), w) for m, w in decoders.items() if m in offsets}
    found = find_families(chosen, rejected, column_mode, column[:MAX_CANDIDATES], decoder_columns)
    family_chosen, family_rejected = family_scores(chosen, found), family_scores(rejected, found)
    delta = (chosen - rejected).tocsc()
    family_delta = family_chosen - family_rejected

    table, joint = _mode_table("family", family_chosen, family_rejected, lengths, train_mask, config)
    concept_of_column = np.empty(chosen.shape[1], dtype=object)
    concept_of_column[column] = concepts["concept_id"].to_numpy()
    member_family = found.family[column]
    table["concept_id"] = [f"family:{f}" for f in range(found.n_families)]
    ranked_members = concepts["concept_id"].to_numpy()
    table["members"] = [list(ranked_members[member_family == f]) for f in range(found.n_families)]
    table["n_members"] = [len(m) for m in table["members"]]
    table["representative"] = concept_of_column[representatives(delta, found, family_delta)]
    table["mean_similarity"] = [found.mean_similarity(f) for f in range(found.n_families)]
    table["effect_size"] = effect_size(family_delta)
    nearest, table["probe_r"] = nearest_probes(family_delta, probe_delta)  # this column order, as stored
    table["nearest_probe"] = nearest
    # Until the labeller names it, a family goes by its representative's name.
    table["label"] = table["representative"]
    # Ranked by the concepts' rule (length-controlled effect first): ranked by effect size alone, the
    # full HH audit's top families were all length in disguise and its refusal families fell to 27th.
    families = agreement_strength(rank_concepts(table, alpha=config.fdr_threshold), len(train_mask))

    concepts = concepts.assign(
        family=np.where(member_family >= 0, np.char.add("family:", member_family.astype(str)), ""),
        family_weight=np.where(member_family >= 0, found.weights[column], np.nan),
        effect_size=effect_size(delta)[column],
    )
    summary = _family_summary(concepts, families, delta, column, lengths, train_mask, config)
    summary.update(n_families=found.n_families, n_clustered=int(len(found.clustered)))
    summary["joint_model"] = {k: v for k, v in joint.items() if not isinstance(v, np.ndarray)}
    if progress:
        progress("families", 1, 1, unit="steps")
    return pd.concat([families, concepts], ignore_index=True), (family_chosen, family_rejected), summary


def _seed_stability(
    concepts: pd.DataFrame,
    mode_data: dict[str, tuple[sp.csr_matrix, sp.csr_matrix]],
    retrained: dict[str, SAETrainingConfig],
    store,
    pooled,
    config: AuditConfig,
    *,
    hook: str,
    device: str,
    progress,
) -> pd.DataFrame:
    """Retrain the audit's SAEs (same activations, same settings) with ``config.sae_seeds`` other
    seeds and add ``seed_stability`` to the families: the share of seeds whose SAE has a latent
    about as aligned with the family as its best member (robustness.seed_stability). ``pooled`` is
    the difference mode's pooled residuals, computed once by the audit (None without that mode)."""
    sae_modes = [m for m in retrained if m in mode_data]
    reference = sp.hstack([mode_data[m][0] - mode_data[m][1] for m in sae_modes]).tocsc()
    offsets = dict(zip(sae_modes, np.cumsum([0] + [mode_data[m][0].shape[1] for m in sae_modes[:-1]]).tolist()))
    families = concepts[concepts["kind"] == "family"]
    by_id = concepts.set_index("concept_id")
    members = [
        np.array(
            [offsets[by_id.at[m, "mode"]] + int(by_id.at[m, "feature"]) for m in row if by_id.at[m, "mode"] in offsets],
            dtype=np.int64,
        )
        for row in families["members"]
    ]
    family_chosen, family_rejected = mode_data["family"]
    family_delta = (family_chosen - family_rejected).tocsc()[:, families["feature"].to_numpy(dtype=np.int64)]
    # Read once for every seed: the token SAE's training tokens, the difference SAE's vectors.
    training: dict[str, torch.Tensor] = {}
    if "token" in sae_modes:
        training["token"] = store.training_tokens()[0]
    if "difference" in sae_modes:
        training["difference"] = difference_vectors(pooled)
    seed_deltas = []
    for index in range(config.sae_seeds):
        seed = config.seed + 1 + index
        parts = []
        with tempfile.TemporaryDirectory() as scratch:
            for mode in sae_modes:
                sae, _ = train_sae(
                    training[mode],
                    Path(scratch) / mode,
                    replace(retrained[mode], seed=seed),
                    hook=hook if mode == "token" else hook + ".pooled_difference",
                    device=device,
                )
                if mode == "token":
                    chosen, rejected = encode_responses(store, sae).pooled(config.pooling)
                else:
                    chosen, rejected = encode_differences(pooled, sae)
                parts.append(chosen - rejected)
        seed_deltas.append(sp.hstack(parts).tocsc())
        if progress:
            progress("sae_seeds", index + 1, config.sae_seeds, unit="seeds")
    stability = seed_stability(family_delta, reference, members, seed_deltas)
    concepts = concepts.copy()
    concepts["seed_stability"] = np.nan
    concepts.loc[families.index, "seed_stability"] = stability
    return concepts


def _family_summary(
    concepts: pd.DataFrame,
    families: pd.DataFrame,
    delta: sp.csc_matrix,
    column: np.ndarray,
    lengths: tuple[np.ndarray, np.ndarray],
    train_mask: np.ndarray,
    config: AuditConfig,
) -> dict:
    """How well the families summarise the concepts: how many families hold 90% of the
    significant concepts, and the share of the joint model's held-out AUC gain over a length-only
    model that the members of the top TOP_FAMILIES families keep."""
    significant = concepts["q_value"].to_numpy() < config.fdr_threshold
    counts = concepts.loc[significant & (concepts["family"] != ""), "family"].value_counts().to_numpy()
    needed = int(np.searchsorted(np.cumsum(counts), 0.9 * significant.sum() - 1e-9) + 1) if len(counts) else 0
    covered = counts.sum() >= 0.9 * significant.sum() - 1e-9
    top = set(families["concept_id"].head(TOP_FAMILIES))
    top_columns = column[concepts["family"].isin(top).to_numpy()]
    auc = {}
    for name, columns in (("all", column), ("top", top_columns)):
        fit = joint_model(delta[:, np.sort(columns)], *lengths, train_mask, config.seed) if len(columns) else {}
        auc[name] = float(fit.get("auc_held_out", float("nan")))
    length_auc = length_baseline(*lengths, train_mask, config.seed).length_only_auc_held_out
    gain_all, gain_top = auc["all"] - length_auc, auc["top"] - length_auc
    return {
        "min_similarity": MIN_SIMILARITY,
        "n_significant_concepts": int(significant.sum()),
        "families_holding_90pct_of_significant": needed if covered and significant.any() else None,
        "top_families": TOP_FAMILIES,
        "auc_held_out_length_only": length_auc,
        "auc_held_out_all_concepts": auc["all"],
        "auc_held_out_top_families": auc["top"],
        "auc_gain_retained_by_top_families": gain_top / gain_all if gain_all > 0 else float("nan"),
    }


def _label_concepts(
    concepts: pd.DataFrame,
    cards: pd.DataFrame,
    pairs: pd.DataFrame,
    mode_data: dict,
    config: AuditConfig,
    out_dir: Path,
    progress,
    warnings: list[str],
) -> pd.DataFrame:
    """Offline labels for the best-ranked SAE concepts; LLM labels on top when configured. An LLM
    endpoint that fails costs a warning (in ``warnings`` and the log) and the LLM labels, never the
    audit: every concept keeps its offline label."""
    concepts = concepts.copy()
    concepts["label_source"] = np.where(concepts["kind"] == "probe", "probe", "")
    concepts["top_ngrams"] = ""
    concepts["top_tokens"] = ""
    concepts["snippets"] = [[] for _ in range(len(concepts))]
    concepts["llm_fidelity"] = np.nan
    sae_rows = concepts.index[concepts["kind"] == "family"][: config.labelled_concepts].append(
        concepts.index[concepts["kind"] == "sae"][: config.labelled_concepts]
    )
    cards_by_concept = {cid: group for cid, group in cards.groupby("concept_id")} if len(cards) else {}
    rng = np.random.default_rng(config.seed)
    for name in ("detection", "detection_low", "detection_high"):
        concepts[name] = np.nan
    labeler = _make_labeler(config, out_dir, warnings)
    texts = list(pairs["chosen"]) + list(pairs["rejected"])
    # Both sides stacked (chosen rows, then rejected), column-major so each feature is one slice.
    stacked = {mode: sp.vstack([c, r]).tocsc() for mode, (c, r) in mode_data.items() if mode != "probe"}
    for count, index in enumerate(sae_rows):
        row = concepts.loc[index]
        mode, feature = row["mode"], int(row["feature"])
        column = stacked[mode][:, feature].toarray().ravel()  # 2n: chosen then rejected
        order = np.argsort(-column, kind="stable")
        high = [texts[i] for i in order[:30] if column[i] > 0]
        zero = np.flatnonzero(column == 0)
        low_index = rng.choice(zero, size=min(200, len(zero)), replace=False) if len(zero) else order[-30:]
        low = [texts[i] for i in low_index]
        # More candidates than shown: those made only of function words are left out of the label.
        ngrams = labelling.contrastive_ngrams(high, low, top_k=NGRAM_CANDIDATES) if high else []
        informative = [(g, z) for g, z in ngrams if not labelling.is_function_words(g)][:8]
        # A family shows its representative's tokens when that is a token-mode feature.
        representative = str(row.get("representative") or "")
        card_id = (
            representative if row["kind"] == "family" and representative.startswith("token:") else row["concept_id"]
        )
        card = cards_by_concept.get(card_id)
        token_records: list[tuple[str, float]] = []
        if card is not None:
            for tokens, acts in zip(card["tokens"], card["token_activations"]):
                token_records.extend(zip(tokens, acts))
        top_tokens = labelling.top_activating_tokens(token_records, top_k=8) if token_records else []
        label = labelling.offline_label(top_tokens, ngrams, row.get("nearest_probe") or None, row.get("probe_r"))
        concepts.at[index, "label"] = label
        concepts.at[index, "label_source"] = "offline"
        concepts.at[index, "top_ngrams"] = ", ".join(g for g, _ in informative)
        if card is not None and card_id.startswith("token:"):
            quotes = [
                labelling.snippet(tokens, acts) for tokens, acts in zip(card["tokens"], card["token_activations"])
            ]
        else:  # difference mode has no token activations: the start of its strongest responses
            quotes = [" ".join(text.split()[:SNIPPET_WORDS]) + "…" for text in high]
        concepts.at[index, "snippets"] = [q for q in dict.fromkeys(quotes) if q][:3]
        concepts.at[index, "top_tokens"] = ", ".join(t for t, _ in top_tokens)
        if labeler is not None and count < config.llm_labelled_concepts and high:
            try:
                labelled = _llm_label(labeler, column, order, texts, low_index, rng, config.seed)
            except labelling.LabelingError as exc:
                _warn(warnings, f"LLM labels skipped, offline labels kept: {exc}")
                labeler, labelled = None, None
            if labelled is not None:
                concepts.at[index, "label"] = labelled["label"]
                concepts.at[index, "label_source"] = "llm"
                concepts.at[index, "llm_fidelity"] = labelled["fidelity"]
                score = labelled["detection"]
                concepts.loc[index, ["detection", "detection_low", "detection_high"]] = [
                    score.score,
                    score.low,
                    score.high,
                ]
        if progress:
            progress("labels", count + 1, len(sae_rows), unit="concepts")
    unlabelled = (concepts["kind"] == "sae") & (concepts["label_source"] == "")
    concepts.loc[unlabelled, "label"] = [
        f"{m} feature {f}" for m, f in zip(concepts.loc[unlabelled, "mode"], concepts.loc[unlabelled, "feature"])
    ]
    concepts.loc[unlabelled, "label_source"] = "none"
    # Families beyond the labelled ones take their representative's label.
    by_id = dict(zip(concepts["concept_id"], concepts["label"]))
    rest = (concepts["kind"] == "family") & (concepts["label_source"] == "")
    concepts.loc[rest, "label"] = [by_id.get(r, r) for r in concepts.loc[rest, "representative"]]
    concepts.loc[rest, "label_source"] = "representative"
    return concepts


def _warn(warnings: list[str], message: str) -> None:
    logger.warning(message)
    warnings.append(message)


def _make_labeler(config: AuditConfig, out_dir: Path, warnings: list[str]) -> labelling.LLMLabeler | None:
    """The local labeller (``--labeller``), else the endpoint from the environment, else none.
    A local model that cannot be loaded costs a warning, never the audit."""
    if not config.llm_labelled_concepts:
        return None
    cache = out_dir / names.LLM_LABEL_CACHE_FILE
    if config.labeller:
        try:
            return LocalLabeler.load(config.labeller, cache, device=config.device)
        except labelling.LabelingError as exc:
            _warn(warnings, f"LLM labels skipped, offline labels kept: {exc}")
            return None
    endpoint = labelling.LLMEndpoint.from_env()
    return labelling.LLMLabeler(endpoint, cache) if endpoint else None


def _llm_label(
    labeler: labelling.LLMLabeler,
    column: np.ndarray,
    order: np.ndarray,
    texts: list[str],
    inactive: np.ndarray,
    rng: np.random.Generator,
    seed: int,
) -> dict | None:
    """An LLM label for one concept (``column``: its activation on every response, chosen then
    rejected): candidates proposed from its 10 strongest responses against hard negatives (the
    other side of the same pairs), the one whose yes/no annotations of 40 random responses track
    the activations best (fidelity), and that label's detection score on the next strongest
    responses, held out from the proposal, against responses where it is silent."""
    n_responses = len(texts)
    active = [int(i) for i in order[:30] if column[i] > 0]
    shown, held_active = active[:10], active[10 : 10 + DETECTION_HELD_OUT]
    negatives = [(i + n_responses // 2) % n_responses for i in shown]
    held = rng.choice(n_responses, size=min(40, n_responses), replace=False)
    candidates = labeler.label_feature(
        [texts[i] for i in shown],
        [texts[i] for i in negatives],
        [texts[i] for i in held],
        column[held].tolist(),
        n_candidates=labeler.candidates,
    )
    if not candidates or math.isnan(candidates[0]["fidelity"]):
        return None
    label = candidates[0]["label"]
    others = [int(i) for i in inactive[:DETECTION_HELD_OUT] if column[i] <= 0]
    detection = detection_score(
        labeler.annotate(label, [texts[i] for i in held_active]) if held_active else [],
        labeler.annotate(label, [texts[i] for i in others]) if others else [],
        seed=seed,
    )
    return {"label": label, "fidelity": candidates[0]["fidelity"], "detection": detection}


def load_concepts(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(Path(folder) / names.CONCEPTS_FILE)
