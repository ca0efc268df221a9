"""On-disk names: every file and folder a stage writes, in one place (as sae-lens keeps its own).

Artifacts live under ``<workspace>/artifacts/<kind>-<hash>/``; a job's own working files live under
``<workspace>/jobs/<id>/``. The typed readers in ``spectrum_core.artifacts`` use these names.
"""

from __future__ import annotations

# The workspace's database, beside artifacts/ and jobs/.
DATABASE_FILE = "spectrum.db"

# Shared by several artifacts and by every job folder.
REPORT_FILE = "report.json"  # an audit's, an evaluation's, a loaded dataset's or a reward's report
CONFIG_FILE = "config.yaml"  # a run's configuration; in a job folder, what ``--resume`` runs again
PROGRESS_FILE = "progress.jsonl"  # one JSON line per progress update
LOG_FILE = "log.txt"  # a job's standard output and error

# Activations artifact (activations-<hash>/): the residual shards an audit reads.
ACTIVATIONS_MANIFEST_FILE = "manifest.json"  # settings, responses, shard plan, token counts
ACTIVATION_SHARD_FILE = "shard-{index:05d}.safetensors"  # .format(index=...): one shard of responses

# Dataset artifact (dataset-<hash>/): the normalised pairs and the load report (REPORT_FILE).
DATASET_PAIRS_FILE = "pairs.parquet"

# Audit artifact (audit-<hash>/).
CONCEPTS_FILE = "concepts.parquet"
PAIR_FEATURES_FILE = "pair_features.parquet"
FEATURE_CARDS_FILE = "feature_cards.parquet"
AUDITED_PAIRS_FILE = "pairs.parquet"  # pair ids, splits and prompt topics of the audited sample
TOPICS_FILE = "topics.parquet"  # the prompt topics: number, label, pairs
TOPIC_LEANS_FILE = "topic_leans.parquet"  # each family's lean within each topic
TOKEN_SAE_DIR = "sae"
DIFFERENCE_SAE_DIR = "sae_difference"
LLM_LABEL_CACHE_FILE = "llm_label_cache.jsonl"

# Scoring artifact (score-<hash>/): an audit's concepts scored on pairs it did not see, with
# PAIR_FEATURES_FILE in the audit's long form.
SCORES_MANIFEST_FILE = "scores.json"  # the audit, dataset, concepts and their members, pair counts
SCORED_PAIRS_FILE = "scored_pairs.parquet"  # every scored pair's id (a pair with all zeros has no feature row)
SCORING_ACTIVATIONS_DIR = "activations"  # in the scoring job's folder: its resumable residual shards

# Tuning run artifact (tune-<hash>/) and the tuning job's folder.
RUN_FILE = "run.json"  # what the run trained on: plan, audit, dataset, model, method
ADAPTER_DIR = "adapter"  # peft LoRA adapter and tokenizer
MODEL_DIR = "model"  # a full fine-tune's weights and tokenizer
REWARD_DIR = "reward"  # a ReSet run's shaped reward (and its report)
REWARD_WEIGHTS_FILE = "reward.npz"
REWARD_META_FILE = "reward.json"  # beside the weights: the reward's inputs, scales and basis
HELD_OUT_TASKS_FILE = "held_out_tasks.jsonl"  # Spectrum Tuning's held-out task families
IA2_ADAPTER_FILE = "ia2_adapter.safetensors"  # the adapter after IA2 priming, before tuning
CHECKPOINTS_DIR = "checkpoints"  # in the job folder: trainer checkpoints, for resuming
DPO_PAIRS_DIR = "dpo_pairs"  # in the job folder: the training pairs as a dataset shared by processes
RESET_ROUND_GLOB = "round-*.jsonl"  # a ReSet round's kept samples

# Evaluation artifact (eval-<hash>/).
GENERATIONS_DIR = "generations"
GENERATIONS_FILE = "generations.parquet"  # in GENERATIONS_DIR: one row per (prompt, response)
EVAL_TABLES = (  # <name>.parquet
    "steerability",
    "coverage",
    "alignment",
    "faithfulness",
    "prevalence",
    "shifts",  # tuned runs: predicted vs realised shift per family (the prediction scatter)
    "checkpoint_shifts",  # tuned runs: the suppressed concepts' shift at every saved checkpoint
)
SHIFTS_FILE = "shifts.parquet"
FAITHFULNESS_FILE = "faithfulness.parquet"
PREVALENCE_FILE = "prevalence.parquet"
CHECKPOINT_SHIFTS_FILE = "checkpoint_shifts.parquet"

# Saved plan artifact (plan-<hash>/).
PLAN_FILE = "plan.yaml"
SHAPED_JSONL_FILE = "shaped.jsonl"
SHAPED_PARQUET_FILE = "shaped.parquet"
SHAPING_FILE = "shaping.parquet"
