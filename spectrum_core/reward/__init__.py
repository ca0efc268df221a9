"""The shaped reward: Bradley–Terry on SAE features, with suppressed concepts projected out."""

from .encoder import EncodedResponses, ResponseEncoder, orthonormal_basis, project_out
from .shaped import RewardConfig, RewardReport, ShapedReward, fit_shaped_reward, load_audit_saes

__all__ = [
    "EncodedResponses",
    "ResponseEncoder",
    "RewardConfig",
    "RewardReport",
    "ShapedReward",
    "fit_shaped_reward",
    "load_audit_saes",
    "orthonormal_basis",
    "project_out",
]
