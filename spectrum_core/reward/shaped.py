"""The shaped reward: a Bradley–Terry model on per-response SAE features and pooled activations,
fitted on the shaped pairs with their weights, that scores any (prompt, response).

Shaping, for the plan's decisions:

- **suppress**: the concept's decoder direction is projected out of the residual stream before
  the SAE encodes it (see ``encoder``), and the concept's own input (its SAE feature, or for a
  probe concept the probe's value) is kept in the fit, so that other inputs do not absorb its
  effect, and then given no weight when scoring (partialling out);
  finally the reward (bonuses included) is made linearly independent of the suppressed concepts
  on the training responses: the part a regression on their activations explains is subtracted;
- **amplify**: a bonus of ``strength`` × the concept's activation in standard deviations × the
  reward's own standard deviation, so strength 1 moves the reward by one SD per SD of the concept.

The fit is scikit-learn's L2 logistic regression on Δx = x(chosen) − x(rejected) without an
intercept (Bradley–Terry), on both orientations so the classes balance, with pair weights as
sample weights. The report compares it to the unshaped reward (same inputs, no projection, the
original pairs): held-out accuracy and, for each decided concept, its dependence: the Pearson
correlation, on held-out pairs, between the reward margin and the concept's Δ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from .. import constants as names
from ..audit.probes import PROBES, compute_probes
from ..audit.responses import response_index
from ..interventions.plan import InterventionPlan
from ..models import LoadedModel
from .encoder import EncodedResponses, ResponseEncoder, orthonormal_basis

TOKEN_SAE, DIFFERENCE_SAE = names.TOKEN_SAE_DIR, names.DIFFERENCE_SAE_DIR


@dataclass
class RewardConfig:
    max_train_pairs: int | None = 600  # a seeded sample of the shaped train split; None: all
    max_held_out_pairs: int | None = 200
    use_pooled: bool = True  # pooled residual stream as inputs besides the SAE features
    C: float = 0.5  # inverse L2 strength of the logistic regression
    seed: int = 0


@dataclass
class RewardReport:
    n_train: int
    n_held_out: int
    accuracy_before: float
    accuracy_after: float
    dependence: list[dict] = field(default_factory=list)  # concept_id, action, before, after

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.dependence, columns=["concept_id", "action", "before", "after"])


def load_audit_saes(audit_folder: Path, device: str = "cpu") -> dict:
    from sae_lens import SAE

    saes = {}
    for name in (TOKEN_SAE, DIFFERENCE_SAE):
        if (Path(audit_folder) / name).exists():
            saes[name] = SAE.load_from_disk(str(Path(audit_folder) / name), device=device)
    return saes


def concept_direction(concept_id: str, saes: dict) -> torch.Tensor | None:
    """A concept's decoder direction in the residual stream (None for probes)."""
    kind, _, index = concept_id.partition(":")
    sae = {"token": saes.get(TOKEN_SAE), "difference": saes.get(DIFFERENCE_SAE)}.get(kind)
    if sae is None:
        return None
    return sae.W_dec[int(index)].detach().float().cpu()


def concept_activation(concept_id: str, encoded: EncodedResponses, texts: list[str], saes: dict) -> np.ndarray:
    """The concept's value per response: its SAE feature (token mode), the pooled residual's
    component along its direction (difference mode), or the probe."""
    kind, _, index = concept_id.partition(":")
    if kind == "token":
        return np.asarray(encoded.features[:, int(index)].todense()).ravel()
    if kind == "difference":
        direction = concept_direction(concept_id, saes)
        assert direction is not None, "a difference concept needs the difference SAE"
        return encoded.pooled @ direction.numpy()
    if kind == "probe" and index in PROBES:
        return compute_probes(texts, encoded.lengths)[index].to_numpy(dtype=np.float64)
    raise KeyError(f"unknown concept {concept_id!r}")


Parts = list[tuple[str, float]]  # (concept id, weight): a concept, or a family's members
# What a saved reward names per bonus or residualised concept: parts, or a bare concept id (as
# rewards saved before families wrote it).
ConceptRef = Parts | str


def parts_activation(parts: ConceptRef, encoded: EncodedResponses, texts: list[str], saes: dict) -> np.ndarray:
    """The weighted sum of the parts' activations (``ConceptChoice.parts``); a bare concept id, as
    rewards saved before families wrote it, is that concept alone."""
    if isinstance(parts, str):
        parts = [(parts, 1.0)]
    total = np.zeros(len(texts), dtype=np.float64)
    for concept_id, weight in parts:
        total = total + float(weight) * concept_activation(concept_id, encoded, texts, saes)
    return total


def parts_directions(parts: Parts, saes: dict) -> list[torch.Tensor]:
    """The decoder directions among the parts (probes have none)."""
    return [d for d in (concept_direction(concept_id, saes) for concept_id, _ in parts) if d is not None]


class ShapedReward:
    """Scores (prompt, response) pairs; higher is preferred."""

    def __init__(
        self,
        encoder: ResponseEncoder,
        saes: dict,
        coef: np.ndarray,
        scale: np.ndarray,
        covariates: list[str],
        bonuses: Sequence[tuple[ConceptRef, float, float]],
        reward_sd: float,
        use_pooled: bool,
        residualize: Sequence[tuple[ConceptRef, float]] | None = None,
    ):
        self.encoder, self.saes = encoder, saes
        self.residualize = residualize or []  # (suppressed parts, slope) subtracted from the score
        self.coef, self.scale = coef, scale
        self.covariates = covariates  # suppressed probe concepts: in the fit, weight 0 in scoring
        self.bonuses = bonuses  # (parts, strength, concept sd)
        self.reward_sd = reward_sd
        self.use_pooled = use_pooled

    def design(self, encoded: EncodedResponses, texts: list[str]) -> np.ndarray:
        return _design(encoded, texts, self.covariates, self.use_pooled, self.saes) / self.scale

    def linear_part(self, projected: EncodedResponses, texts: list[str]) -> np.ndarray:
        return self.design(projected, texts) @ self.coef

    def score_encoded(self, projected: EncodedResponses, plain: EncodedResponses, texts: list[str]) -> np.ndarray:
        """Scores from both encodings of the responses: ``projected`` (the reward's inputs) and
        ``plain`` (concept activations as the audit measured them)."""
        score = self.linear_part(projected, texts)
        for parts, strength, sd in self.bonuses:
            score = score + strength * self.reward_sd * parts_activation(parts, plain, texts, self.saes) / sd
        for parts, slope in self.residualize:
            score = score - slope * parts_activation(parts, plain, texts, self.saes)
        return score

    def score(self, prompts: list, responses: list[str], progress=None) -> np.ndarray:
        plain, projected = self.encoder.encode_with(prompts, list(responses), [None, self.encoder.basis], progress)
        return self.score_encoded(projected, plain, list(responses))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / names.REWARD_WEIGHTS_FILE,
            coef=self.coef,
            scale=self.scale,
            basis=np.zeros((0, 0)) if self.encoder.basis is None else self.encoder.basis.numpy(),
        )
        (folder / names.REWARD_META_FILE).write_text(
            json.dumps(
                {
                    "covariates": self.covariates,
                    "bonuses": self.bonuses,
                    "reward_sd": self.reward_sd,
                    "use_pooled": self.use_pooled,
                    "layer": self.encoder.layer,
                    "residualize": self.residualize,
                },
                indent=1,
            )
        )

    @classmethod
    def load(cls, folder: Path, loaded: LoadedModel, audit_folder: Path) -> ShapedReward:
        folder = Path(folder)
        arrays = np.load(folder / names.REWARD_WEIGHTS_FILE)
        meta = json.loads((folder / names.REWARD_META_FILE).read_text())
        saes = load_audit_saes(audit_folder)
        basis = torch.from_numpy(arrays["basis"]) if arrays["basis"].size else None
        encoder = ResponseEncoder(loaded, saes[TOKEN_SAE], meta["layer"], basis)
        return cls(
            encoder,
            saes,
            arrays["coef"],
            arrays["scale"],
            meta["covariates"],
            [tuple(b) for b in meta["bonuses"]],
            meta["reward_sd"],
            meta["use_pooled"],
            [tuple(r) for r in meta["residualize"]],
        )


def _design(
    encoded: EncodedResponses, texts: list[str], covariates: list[str], use_pooled: bool, saes: dict
) -> np.ndarray:
    blocks = [encoded.features.toarray()]
    if use_pooled:
        blocks.append(encoded.pooled)
    for concept_id in covariates:
        blocks.append(concept_activation(concept_id, encoded, texts, saes)[:, None])
    return np.hstack(blocks).astype(np.float64)


def _fit_bt(delta: np.ndarray, weights: np.ndarray, C: float, seed: int) -> np.ndarray:
    x = np.vstack([delta, -delta])
    y = np.concatenate([np.ones(len(delta)), np.zeros(len(delta))])
    model = LogisticRegression(C=C, fit_intercept=False, max_iter=3000, random_state=seed)
    model.fit(x, y, sample_weight=np.concatenate([weights, weights]))
    return model.coef_.ravel()


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    return frame if n is None or len(frame) <= n else frame.sample(n=n, random_state=seed)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def fit_shaped_reward(
    loaded: LoadedModel,
    audit_folder: Path,
    plan: InterventionPlan,
    pairs: pd.DataFrame,
    shaping: pd.DataFrame,
    config: RewardConfig | None = None,
    progress=None,
) -> tuple[ShapedReward, RewardReport]:
    """Fit the unshaped and the shaped reward; return the shaped one and the comparison.

    ``pairs`` is the dataset's table; ``shaping`` the plan's per-pair outcome (kept, flipped,
    weight), as ``ShapedPairs.table`` or a saved plan's ``shaping.parquet``."""
    config = config or RewardConfig()
    saes = load_audit_saes(audit_folder)
    if TOKEN_SAE not in saes:
        raise FileNotFoundError(f"{audit_folder} has no token-mode SAE; the reward needs one")
    suppressed = [c.parts() for c in plan.suppressed]
    members = [concept_id for parts in suppressed for concept_id, _ in parts]
    basis = orthonormal_basis([d for parts in suppressed for d in parts_directions(parts, saes)])
    covariates = [c for c in members if c.startswith("probe:")]
    suppressed_features = [int(c.split(":")[1]) for c in members if c.startswith("token:")]

    train, held_out = _reward_pairs(pairs, shaping, config)
    used = pd.concat([train, held_out])
    encoder = ResponseEncoder(loaded, saes[TOKEN_SAE], plan.layer)
    texts, plain, projected = _encode_pairs(encoder, used, basis, progress)
    n_train = len(train)
    held_rows = np.arange(n_train, len(used))

    scores_before = _unshaped_scores(plain, texts, n_train, config, saes)
    scaled, scale_shaped, coef = _fit_shaped(projected, texts, covariates, suppressed_features, train, config, saes)
    base_scores = scaled[: 2 * n_train] @ coef
    reward_sd = float(base_scores.std() + 1e-6)
    bonuses, base_scores = _amplify_bonuses(plan, plain, texts, saes, n_train, base_scores, reward_sd)
    # Remove what the suppressed concepts' activations still explain of the training margins
    # (bonuses included: where an amplified concept carries a suppressed one, suppress wins).
    residualize = _residual_slopes(suppressed, plain, texts, saes, n_train, base_scores) if suppressed else []
    reward = ShapedReward(
        encoder=ResponseEncoder(loaded, saes[TOKEN_SAE], plan.layer, basis),
        saes=saes,
        coef=coef,
        scale=scale_shaped,
        covariates=covariates,
        bonuses=bonuses,
        reward_sd=reward_sd,
        use_pooled=config.use_pooled,
        residualize=residualize,
    )

    margin_before = _pair_delta(scores_before, held_rows)
    margin_after = _pair_delta(reward.score_encoded(projected, plain, texts), held_rows)
    report = RewardReport(
        n_train=int(train["kept"].to_numpy(dtype=bool).sum()),
        n_held_out=len(held_rows),
        accuracy_before=float((margin_before > 0).mean()),
        accuracy_after=float((margin_after > 0).mean()),
        dependence=_dependence(plan, plain, texts, saes, held_rows, margin_before, margin_after),
    )
    return reward, report


def _pair_delta(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x(chosen) − x(rejected) for the pairs at ``rows`` (one row of ``x`` per response)."""
    return x[response_index(rows, 0)] - x[response_index(rows, 1)]


def _encode_pairs(
    encoder: ResponseEncoder, used: pd.DataFrame, basis: torch.Tensor | None, progress
) -> tuple[list[str], EncodedResponses, EncodedResponses]:
    """The pairs' responses, interleaved (chosen, rejected), and their two encodings: plain, and
    with the suppressed directions projected out (``basis``)."""
    prompts = [p for p in used["prompt"] for _ in range(2)]
    texts = [t for c, r in zip(used["chosen"], used["rejected"]) for t in (c, r)]
    plain, projected = encoder.encode_with(prompts, texts, [None, basis], progress)
    return texts, plain, projected


def _reward_pairs(
    pairs: pd.DataFrame, shaping: pd.DataFrame, config: RewardConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded samples of the train and held-out pairs, with their shaping (pairs the plan did not
    see: kept, not flipped, weight 1)."""
    table = pairs.merge(shaping[["pair_id", "kept", "flipped", "weight"]], on="pair_id", how="left")
    table[["kept", "flipped"]] = table[["kept", "flipped"]].fillna({"kept": True, "flipped": False})
    table["weight"] = table["weight"].fillna(1.0)
    train = _sample(table[table["split"] == "train"], config.max_train_pairs, config.seed)
    held_out = _sample(table[table["split"] != "train"], config.max_held_out_pairs, config.seed)
    return train, held_out


def _unshaped_scores(
    plain: EncodedResponses, texts: list[str], n_train: int, config: RewardConfig, saes: dict
) -> np.ndarray:
    """Every response's score under the unshaped reward (the comparison's "before"): original
    labels, weight 1, no projection, no covariates."""
    x_plain = _design(plain, texts, [], config.use_pooled, saes)
    scale_plain = x_plain[: 2 * n_train].std(axis=0) + 1e-6
    train_rows = np.arange(n_train)
    coef_plain = _fit_bt(_pair_delta(x_plain / scale_plain, train_rows), np.ones(n_train), config.C, config.seed)
    return (x_plain / scale_plain) @ coef_plain


def _fit_shaped(
    projected: EncodedResponses,
    texts: list[str],
    covariates: list[str],
    suppressed_features: list[int],
    train: pd.DataFrame,
    config: RewardConfig,
    saes: dict,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shaped fit: dropped pairs out, flipped pairs reversed, weights; projected inputs and
    covariates. Returns the scaled inputs, their scale and the coefficients, with the suppressed
    features and the covariates given no weight (in the fit, out of the score)."""
    x_shaped = _design(projected, texts, covariates, config.use_pooled, saes)
    n_train = len(train)
    scale_shaped = x_shaped[: 2 * n_train].std(axis=0) + 1e-6
    scaled = x_shaped / scale_shaped
    kept = train["kept"].to_numpy(dtype=bool)
    orientation = np.where(train["flipped"].to_numpy(dtype=bool), -1.0, 1.0)[:, None]
    delta = _pair_delta(scaled, np.arange(n_train)) * orientation
    coef = _fit_bt(delta[kept], train["weight"].to_numpy(dtype=float)[kept], config.C, config.seed)
    for feature in suppressed_features:
        coef[feature] = 0.0
    d_sae = saes[TOKEN_SAE].cfg.d_sae
    coef[d_sae + (projected.pooled.shape[1] if config.use_pooled else 0) :] = 0.0  # covariates
    return scaled, scale_shaped, coef


def _amplify_bonuses(
    plan: InterventionPlan,
    plain: EncodedResponses,
    texts: list[str],
    saes: dict,
    n_train: int,
    base_scores: np.ndarray,
    reward_sd: float,
) -> tuple[list[tuple[Parts, float, float]], np.ndarray]:
    """(parts, strength, concept sd) for each amplified concept, and the training responses' scores
    with the bonuses added."""
    bonuses = []
    for choice in plan.amplified:
        values = parts_activation(choice.parts(), plain, texts, saes)[: 2 * n_train]
        sd = float(values.std() + 1e-6)
        bonuses.append((choice.parts(), float(choice.strength or 1.0), sd))
        base_scores = base_scores + float(choice.strength or 1.0) * reward_sd * values / sd
    return bonuses, base_scores


def _residual_slopes(
    suppressed: list[Parts],
    plain: EncodedResponses,
    texts: list[str],
    saes: dict,
    n_train: int,
    base_scores: np.ndarray,
) -> list[tuple[ConceptRef, float]]:
    """(parts, slope) per suppressed concept: a least-squares fit of the training margins on the
    concepts' activations, in pair differences (what a preference depends on)."""
    train_rows = np.arange(n_train)
    activations = np.column_stack([parts_activation(c, plain, texts, saes)[: 2 * n_train] for c in suppressed])
    slopes, *_ = np.linalg.lstsq(_pair_delta(activations, train_rows), _pair_delta(base_scores, train_rows), rcond=None)
    return [(c, float(b)) for c, b in zip(suppressed, slopes)]


def _dependence(
    plan: InterventionPlan,
    plain: EncodedResponses,
    texts: list[str],
    saes: dict,
    held_rows: np.ndarray,
    margin_before: np.ndarray,
    margin_after: np.ndarray,
) -> list[dict]:
    """For each of the plan's concepts that can be measured, the correlation on held-out pairs
    between its Δ and the reward margin, before and after shaping."""
    dependence = []
    for choice in plan.concepts:
        try:
            values = parts_activation(choice.parts(), plain, texts, saes)
        except KeyError:
            continue
        concept_delta = _pair_delta(values, held_rows)
        dependence.append(
            {
                "concept_id": choice.concept_id,
                "action": choice.action,
                "before": _correlation(margin_before, concept_delta),
                "after": _correlation(margin_after, concept_delta),
            }
        )
    return dependence


def save_report(report: RewardReport, path: Path) -> None:
    Path(path).write_text(json.dumps(asdict(report), indent=1))


def fit_plan_reward(
    loaded: LoadedModel,
    audit_folder: Path,
    plan: InterventionPlan,
    pairs: pd.DataFrame,
    shaping: pd.DataFrame,
    train_pairs: int,
    seed: int,
    folder: Path,
    progress=None,
) -> ShapedReward:
    """The plan's shaped reward fitted on up to ``train_pairs`` of its train pairs (a quarter as
    many held out, at least 20), saved with its report into ``folder``: what a ReSet run fits for
    itself and what the evaluation fits for a run that brought none."""
    config = RewardConfig(max_train_pairs=train_pairs, max_held_out_pairs=max(20, train_pairs // 4), seed=seed)
    reward, report = fit_shaped_reward(loaded, audit_folder, plan, pairs, shaping, config, progress=progress)
    reward.save(folder)
    save_report(report, Path(folder) / names.REPORT_FILE)
    return reward
