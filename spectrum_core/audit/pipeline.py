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

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .. import constants as names
from ..memory import peak_rss_gb, release_freed_memory, reset_peak_rss
from ..models import LoadedModel, load_model
from ..progress import Progress
from ..stages.distributed import agreed_minimum
from .config import MODES, AuditConfig
from .errors import AuditInputError
from .extract.activations import default_layer, extract_activations, hook_name, response_token_counts
from .extract.features import (
    ResponseFeatures,
    difference_vectors,
    encode_differences,
    encode_responses,
    pooled_residuals,
)
from .family_table import add_families
from .heads import add_heads, copy_from_sources, queue_quality
from .labelling.concept_labels import label_concepts, make_labeler
from .labelling.fidelity import check_head_labels
from .probes import PROBES, compute_probes, nearest_probes
from .report import ActivationSummary, AuditReport, Baselines, JointModelSummary
from .responses import response_texts, split_sides
from .sae import SAETrainingConfig, decoder_directions, evaluate_sae, load_pretrained_sae, train_sae
from .seed_check import add_seed_stability
from .stats.baselines import agreement_strength, length_baseline
from .stats.concept_statistics import concept_table, rank_concepts
from .stats.confirmation import confirm, confirmation_summary, confirmed_first, discovery_split
from .stats.null import (
    NullSummary,
    confirmed_count,
    flip_modes_in_place,
    null_flips,
    set_aside_on_disk,
    significant_count,
)
from .stats.power import power_summary, verdict
from .stats.sign_test import adjust_pvalues
from .tables import family_evidence, feature_cards, token_evidence, write_pair_features
from .topics import find_topics, topic_leans

logger = logging.getLogger(__name__)
# The difference SAE sees two vectors a pair, DIFFERENCE_SAE_PASSES times over, up to 20k pairs;
# beyond, the cap keeps its cost from growing with the data (still 10 passes at 100k pairs, where
# 50 made it 10M samples, 39k steps: the slowest step of a 100k audit after the extraction).
DIFFERENCE_SAE_PASSES = 50
DIFFERENCE_SAE_MAX_SAMPLES = 2_000_000
TOPIC_FAMILIES = 200  # the best-ranked families whose lean per topic is kept (a dense pairs × families array)


@dataclass
class AuditResult:
    folder: Path
    concepts: pd.DataFrame
    report: AuditReport


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
    """Each step's seconds and the process's peak resident memory while it ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peak_gb: dict[str, float] = {}

    def __call__(self, stage: str):
        timer = self

        class _Stage:
            def __enter__(self):
                reset_peak_rss()
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[stage] = round(timer.seconds.get(stage, 0.0) + time.perf_counter() - self.started, 2)
                peak = peak_rss_gb()
                if peak is not None:
                    timer.peak_gb[stage] = max(peak, timer.peak_gb.get(stage, 0.0))
                logger.info("step %s: %.1f s, peak memory %s GB", stage, timer.seconds[stage], peak)

        return _Stage()


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
    # Discovery pairs (everything that looks at the label reads these) and the joint models' train
    # pairs: the discovery pairs too, so the joint models are scored on the confirmation pairs.
    discovery: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
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
    report: AuditReport | None = None  # started once the activations are in
    # Whole-response lengths in tokens (chosen, rejected), not the audit's truncated view of them
    whole_lengths: tuple[np.ndarray, np.ndarray] | None = None
    lengths_override: tuple[np.ndarray, np.ndarray] | None = None  # a null run's swapped lengths
    joint_models: bool = True  # False in a null run: it counts confirmations, no joint model needed

    @property
    def report_so_far(self) -> AuditReport:
        assert self.report is not None, "the report starts in the activations step"
        return self.report

    @property
    def confirming(self) -> bool:
        return self.config.confirmation_share > 0 and not self.discovery.all()

    @property
    def n_discovery(self) -> int:
        return int(self.discovery.sum())

    @property
    def modes(self) -> list[str]:
        return [m for m in self.config.modes if m in MODES]

    @property
    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Response lengths in tokens, chosen and rejected: whole responses once the activations
        step has counted them."""
        if self.lengths_override is not None:
            return self.lengths_override
        if self.whole_lengths is not None:
            return self.whole_lengths
        lengths = self.features.response_tokens if self.features is not None else self.store.response_lengths()
        chosen, rejected = split_sides(lengths.astype(float))
        return chosen, rejected


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
        agree=partial(agreed_minimum, distributed),
    )
    if distributed is not None:
        distributed.wait_for_everyone()
        if not distributed.is_main_process:
            state.stopped = True
            return
    state.discovery = discovery_split(list(state.pairs["prompt"]), config.confirmation_share, config.seed)
    counts = response_token_counts(state.loaded.tokenizer, response_texts(state.pairs)).astype(float)
    state.whole_lengths = split_sides(counts)
    # Without a confirmation split the joint models keep the dataset's own held-out prompts.
    dataset_train = (state.pairs["split"] == "train").to_numpy()
    state.train_mask = train_mask = state.discovery.copy() if state.confirming else dataset_train
    manifest = store.manifest
    state.report = AuditReport(
        config=config.identity(),
        model_path=str(state.loaded.path),
        layer=state.layer,
        hook_name=state.hook,
        n_pairs=len(state.pairs),
        n_train=int(train_mask.sum()),
        n_held_out=int((~train_mask).sum()),
        activations=ActivationSummary(
            **{k: manifest[k] for k in ("n_tokens_total", "n_response_tokens", "n_responses", "d_model")},
            tokens_per_batch=manifest["config"]["tokens_per_batch"],
        ),
    )


def _token_sae(state: AuditState) -> None:
    config, store = state.config, state.store
    state.token_sae_config = SAETrainingConfig(
        width=config.sae_width, k=config.sae_k, training_tokens=config.sae_training_tokens, seed=config.seed
    )
    tokens, token_info = store.training_tokens(seed=config.seed)
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
    state.report_so_far.sae["token"] = metrics
    state.decoders["token"] = decoder_directions(sae)


def _encode(state: AuditState) -> None:
    config = state.config
    state.features = encode_responses(
        state.store,
        state.token_sae,
        poolings=(config.pooling,),
        evidence_top=config.top_examples,
        progress=state.progress,
    )
    # The steps own the pooled matrices from here (the features keep their evidence only): with one
    # owner, the null runs' in-place flips free the originals instead of holding a second copy.
    state.mode_data["token"] = state.features.sides.pop(config.pooling)


def _difference_sae(state: AuditState) -> None:
    state.pooled = pooled = pooled_residuals(state.store)
    vectors = difference_vectors(pooled)
    width = difference_width(len(state.pairs))
    state.difference_sae_config = SAETrainingConfig(
        width=width,
        k=max(2, min(8, width // 16)),
        batch_size=256,
        training_tokens=min(DIFFERENCE_SAE_MAX_SAMPLES, max(50_000, DIFFERENCE_SAE_PASSES * len(vectors))),
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
    state.report_so_far.sae["difference"] = diff_metrics
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
        table, state.joints[mode] = concept_table(
            mode, chosen, rejected, state.lengths, state.train_mask, config, state.discovery, state.joint_models
        )
        if mode == "probe":
            table["concept_id"] = [f"probe:{name}" for name in PROBES]
            table["label"] = list(PROBES)
            table["description"] = [p.description for p in PROBES.values()]
        else:
            table["concept_id"] = [f"{mode}:{j}" for j in range(len(table))]
            assert state.probe_delta is not None  # the probes step runs first
            rows = state.discovery
            table["nearest_probe"], table["probe_r"] = nearest_probes(
                (chosen - rejected)[rows], state.probe_delta[rows]
            )
        tables.append(table)
    if progress:
        progress("statistics", len(mode_data), len(mode_data), unit="modes")
    concepts = pd.concat(tables, ignore_index=True)
    # One family of hypotheses: q-values across every concept of every mode.
    concepts["q_value"] = adjust_pvalues(concepts["p_value"].to_numpy(), method=config.correction)
    concepts["q_sign"] = adjust_pvalues(concepts["p_sign"].to_numpy(), method=config.correction)
    state.concepts = agreement_strength(rank_concepts(concepts, alpha=config.fdr_threshold), state.n_discovery)


def _families(state: AuditState) -> None:
    assert state.probe_delta is not None
    state.concepts, family_matrices, state.report_so_far.families = add_families(
        state.concepts,
        state.mode_data,
        state.decoders,
        state.lengths,
        state.train_mask,
        state.probe_delta,
        state.config,
        state.progress,
        discovery=state.discovery,
        with_joint=state.joint_models,
    )
    state.mode_data["family"] = family_matrices


def _heads(state: AuditState) -> None:
    """The review queue: at most 30 heads chosen jointly on the discovery pairs (heads.py), and,
    outside the null runs, how much they say together on the confirmation pairs."""
    config, report = state.config, state.report_so_far
    state.concepts, state.mode_data["head"], summary = add_heads(
        state.concepts,
        {mode: data for mode, data in state.mode_data.items() if mode != "head"},
        state.discovery,
        state.lengths,
        list(state.pairs["prompt"]),
        config.fdr_threshold,
        config.seed,
    )
    report.heads = summary
    if not (state.joint_models and state.confirming and summary.n_heads):
        return
    head_chosen, head_rejected = state.mode_data["head"]
    sources = list(state.concepts.loc[state.concepts["kind"] == "head", "source"])
    summary.auc_held_out_heads, summary.share_significant_jointly = queue_quality(
        head_chosen - head_rejected, sources, state.lengths, state.discovery, config.seed
    )
    families = report.families
    if families is not None:
        gain_all = families.auc_held_out_all_concepts - families.auc_held_out_length_only
        gain = summary.auc_held_out_heads - families.auc_held_out_length_only
        summary.auc_gain_retained = gain / gain_all if gain_all > 0 else None


def _confirm(state: AuditState) -> None:
    """The finished list's best hypotheses tested once on the confirmation pairs; the confirmed
    ones lead the queue."""
    config, held_out = state.config, ~state.discovery
    concepts = confirm(
        state.concepts,
        state.mode_data,
        held_out,
        config.fdr_threshold,
        config.correction,
        lengths=state.lengths,
        seed=config.seed,
    )
    state.concepts = confirmed_first(concepts)
    state.report_so_far.confirmation = confirmation_summary(
        state.concepts, state.n_discovery, int(held_out.sum()), config.confirmation_share, config.fdr_threshold
    )


def _null(state: AuditState) -> None:
    """The statistics, families and confirmation again on ``null_runs`` copies of the pairs with
    chosen and rejected swapped in a seeded random half (stats/null.py), counting what each confirms.
    The state's own matrices are flipped in place for each run and flipped back after it (exactly),
    so only one copy of them is held; the run rebuilds its own families and heads."""
    config, progress, counts, significant = state.config, state.progress, [], []
    chosen_len, rejected_len = state.lengths
    # The real families and heads wait on disk: each run builds its own from the flipped modes.
    with set_aside_on_disk(state.mode_data, ("family", "head"), state.out_dir):
        for index, flip in enumerate(null_flips(len(state.pairs), config.null_runs, config.seed)):
            flip_modes_in_place(state.mode_data, flip)
            try:
                confirmed, n_significant = _null_run(state, flip, (chosen_len, rejected_len))
            finally:
                flip_modes_in_place(state.mode_data, flip)  # restores the real pairs' matrices
            counts.append(confirmed)
            significant.append(n_significant)
            if progress:
                progress("null", index + 1, config.null_runs, unit="runs")
    state.report_so_far.null = NullSummary.from_counts(confirmed_count(state.concepts), counts, significant)


def _null_run(state: AuditState, flip: np.ndarray, lengths: tuple[np.ndarray, np.ndarray]) -> tuple[int, int]:
    """One null run on the state's matrices, already flipped: its confirmed heads and its
    significant single concepts. The run's state is dropped on return, so none of its references
    to the flipped matrices outlive it."""
    config = state.config
    run = AuditState(state.pairs, config, state.out_dir, state.activations_dir)
    run.discovery, run.train_mask, run.decoders = state.discovery, state.train_mask, state.decoders
    run.mode_data = dict(state.mode_data)  # the run adds its own families and heads to its copy of the dict
    assert state.probe_delta is not None
    run.probe_delta = state.probe_delta.mul(np.where(flip, -1.0, 1.0), axis=0)
    chosen_len, rejected_len = lengths
    run.lengths_override = (np.where(flip, rejected_len, chosen_len), np.where(flip, chosen_len, rejected_len))
    run.report, run.joint_models = replace(state.report_so_far), False
    for step in (_statistics, _families, _heads, _confirm):
        step(run)
    return confirmed_count(run.concepts), significant_count(run.concepts, config.fdr_threshold)


def _sae_seeds(state: AuditState) -> None:
    retrained = {"token": state.token_sae_config} if "token" in state.modes else {}
    if "difference" in state.modes:
        retrained["difference"] = state.difference_sae_config
    state.concepts = add_seed_stability(
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
    state.concepts = copy_from_sources(state.concepts, fields=("seed_stability",))


def _topics(state: AuditState) -> None:
    state.topics = topics = find_topics(
        list(state.pairs["prompt"]), state.config.topics, state.config.seed, device=state.device
    )
    family_rows = state.concepts[state.concepts["kind"] == "family"].head(TOPIC_FAMILIES)
    family_chosen, family_rejected = state.mode_data["family"]
    columns = family_rows["feature"].to_numpy(dtype=np.int64)  # only these made dense: pairs × 200 at most
    family_delta = (family_chosen[:, columns] - family_rejected[:, columns]).toarray()
    state.leans = topic_leans(family_delta, list(family_rows["concept_id"]), topics)
    state.report_so_far.topics = topics.table().to_dict(orient="records")


def _cards_step(state: AuditState) -> None:
    chosen_len, rejected_len = state.lengths
    report = state.report_so_far
    report.joint_models = {mode: JointModelSummary.from_fit(joint) for mode, joint in state.joints.items()}
    report.baselines = Baselines(length_baseline(chosen_len, rejected_len, state.train_mask, state.config.seed))
    assert state.loaded is not None
    evidence = {
        "token": token_evidence(state.features, state.store) if state.features is not None else None,
        "family": _family_evidence(state),
    }
    card_tables = [
        feature_cards(
            mode,
            *state.mode_data[mode],
            state.pairs,
            state.loaded.tokenizer,
            state.config.top_examples,
            evidence.get(mode),
        )
        for mode in ("family", "token", "difference")
        if mode in state.mode_data
    ]
    state.cards = pd.concat(card_tables, ignore_index=True) if card_tables else pd.DataFrame()


def _family_evidence(state: AuditState):
    """Family cards shaded by their token-mode members (tables.family_evidence), when there are any."""
    if state.token_sae is None or "family" not in state.mode_data:
        return None
    concepts = state.concepts
    members = concepts[(concepts["mode"] == "token") & (concepts["family"].fillna("") != "")]
    weights = sp.csr_matrix(
        (
            members["family_weight"].to_numpy(float),
            (
                members["feature"].to_numpy(np.int64),
                members["family"].str.removeprefix("family:").astype(np.int64).to_numpy(),
            ),
        ),
        shape=(state.mode_data["token"][0].shape[1], state.mode_data["family"][0].shape[1]),
    )
    return family_evidence(state.store, state.token_sae, weights)


def _labels(state: AuditState) -> None:
    """Labels written from the discovery pairs' responses; the heads' labels then scored on the
    confirmation pairs' (labelling/fidelity.py)."""
    writing = np.repeat(state.discovery, 2) if state.confirming else None
    warnings = state.report_so_far.warnings
    labeler = make_labeler(state.config, state.out_dir, warnings)
    state.concepts = label_concepts(
        state.concepts,
        state.cards,
        state.pairs,
        state.mode_data,
        state.config,
        labeler,
        state.progress,
        warnings,
        writing=writing,
    )
    state.concepts = copy_from_sources(state.concepts)
    if state.confirming:
        config = state.config
        state.concepts = check_head_labels(
            state.concepts,
            *state.mode_data["head"],
            response_texts(state.pairs),
            ~state.discovery,
            config.fdr_threshold,
            config.seed,
            annotate=labeler.annotate if labeler is not None else None,
        )


def _write(state: AuditState) -> None:
    out_dir, mode_data, pairs = state.out_dir, state.mode_data, state.pairs
    pair_ids = pairs["pair_id"].to_numpy()
    # (concept prefix, chosen, rejected, feature names): only the probes have names; the rest are numbered
    parts: list[tuple[str, Any, Any, list[str] | None]] = [
        (mode, *mode_data[mode], None) for mode in mode_data if mode != "probe"
    ]
    parts.append(("probe", *mode_data["probe"], list(PROBES)))
    write_pair_features(out_dir / names.PAIR_FEATURES_FILE, pair_ids, parts)
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
    Step("heads", _heads),
    Step("confirm", _confirm, when=lambda s: s.confirming),
    Step("null", _null, when=lambda s: s.confirming and s.config.null_runs > 0),
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
            release_freed_memory()  # so what a step freed does not count in the next one's peak
        if state.stopped:
            return None
    report = _finish_report(state, timer.seconds)
    report.peak_memory_gb = timer.peak_gb
    report.write(out_dir)
    return AuditResult(out_dir, state.concepts, report)


def _finish_report(state: AuditState, timings: dict[str, float]) -> AuditReport:
    """Counts, the verdict and power are about single concepts; families have their own q-values
    (``report.families``)."""
    report, concepts, threshold = state.report_so_far, state.concepts, state.config.fdr_threshold
    report.timings = timings
    single_modes = [mode for mode in state.mode_data if mode not in ("family", "head")]
    report.n_concepts = {mode: int((concepts["mode"] == mode).sum()) for mode in single_modes}
    report.n_significant = {
        mode: int(((concepts["mode"] == mode) & (concepts["q_value"] < threshold)).sum()) for mode in single_modes
    }
    assert report.families is not None  # the families step always runs
    report.families.n_significant_families = int(
        ((concepts["kind"] == "family") & (concepts["q_value"] < threshold)).sum()
    )
    singles = concepts[~concepts["kind"].isin(["family", "head"])]
    report.power = summary = power_summary(singles, state.n_discovery, threshold)
    report.fdr_threshold = threshold
    report.verdict = verdict(summary)
    return report
