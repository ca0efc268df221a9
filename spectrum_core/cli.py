"""The ``spectrum`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import settings
from .audit.config import AuditConfig, ScoringConfig
from .bundled import HH_DEMO, bundled_file
from .data import SCHEMAS, describe_pair, load_preferences
from .errors import SpectrumError, UsageError
from .metrics.config import SECTIONS, EvalConfig
from .tuning.config import CONFIG_CLASSES, TuningConfig
from .workspace.artifacts import artifact_version

DEMO = "demo"  # `spectrum audit demo`: the bundled HH-RLHF file
SHARED_TUNING = {s.name for s in settings.settings_of(TuningConfig)}
METHOD_OWNERS = {
    s.name: method
    for method, cls in CONFIG_CLASSES.items()
    for s in settings.settings_of(cls)
    if s.name not in SHARED_TUNING
}  # the settings only one method has


def _overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` items as a dict, each value read as YAML (numbers, booleans, lists)."""
    import yaml

    values = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"--set wants KEY=VALUE, got {item!r}")
        values[key] = yaml.safe_load(raw)
    return values


def _saved_job_config(workspace, job_id: int) -> dict:
    """The configuration a job wrote when it started (what --resume runs again)."""
    import yaml

    from .constants import CONFIG_FILE
    from .jobs import job_dir

    saved = job_dir(workspace, job_id) / CONFIG_FILE
    if not saved.exists():
        raise UsageError(f"job {job_id} has no config.yaml to resume from")
    return yaml.safe_load(saved.read_text())


def _column_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for item in pairs or []:
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise UsageError(f"--map takes FIELD=COLUMN (e.g. chosen=good), got {item!r}")
        mapping[field.strip()] = column.strip()
    return mapping


def _load_options(args) -> dict:
    return {
        "schema": args.schema,
        "column_map": _column_map(args.map) or None,
        "file_format": args.format,
        "max_text_chars": args.max_text_chars,
        "max_decompressed_mb": args.max_decompressed_mb,
    }


def _add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="JSONL, JSON, CSV, TSV or Parquet (optionally .gz), or a folder saved with datasets' save_to_disk"
    )
    parser.add_argument("--schema", choices=list(SCHEMAS), help="skip detection and use this schema")
    parser.add_argument(
        "--map",
        action="append",
        metavar="FIELD=COLUMN",
        help="map one of your columns to a field, e.g. --map chosen=good (repeatable)",
    )
    parser.add_argument("--format", help="override the format guessed from the file name")
    parser.add_argument(
        "--max-text-chars", type=int, default=200_000, help="reject rows with a text longer than this (default: 200000)"
    )
    parser.add_argument(
        "--max-decompressed-mb",
        type=int,
        default=None,
        help="refuse a gzipped file that expands to more than this many MB (default: 1024)",
    )


def cmd_data_inspect(args) -> int:
    options = {k: v for k, v in _load_options(args).items() if v is not None}
    dataset = load_preferences(args.file, **options)
    if args.json:
        print(json.dumps(dataset.report.to_dict(), indent=1, ensure_ascii=False, default=str))
        return 0
    print(dataset.report.summary(max_examples=args.rejections))
    split_counts = dataset.pairs["split"].value_counts().to_dict()
    print(
        f"Split (grouped by prompt): train {split_counts.get('train', 0)}, held out {split_counts.get('held_out', 0)}"
    )
    for _, row in dataset.pairs.head(args.show).iterrows():
        print()
        print(describe_pair(row))
    return 0


def cmd_data_add(args) -> int:
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    options = {k: v for k, v in _load_options(args).items() if v is not None}
    record = workspace.add_dataset(args.file, name=args.name, **options)
    state = "already in the workspace" if record["reused"] else "added"
    print(
        f"Dataset {record['id']} ({record['name']}) {state}: {record['rows_kept']} pairs kept, "
        f"{record['rows_rejected']} rejected, {record['duplicates_merged']} duplicates merged."
    )
    return 0


def cmd_model_prepare(args) -> int:
    from .models import chat_generate, load_model

    started = time.perf_counter()
    loaded = load_model(args.spec, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    print(
        f"Model {loaded.spec} ready at {loaded.path} ({loaded.info['n_layers']} layers, "
        f"hidden size {loaded.info['hidden_size']}) on {loaded.device} as "
        f"{str(loaded.dtype).removeprefix('torch.')}; {time.perf_counter() - started:.1f} s."
    )
    if args.generate:
        reply = chat_generate(loaded, [{"role": "user", "content": args.generate}], max_new_tokens=args.max_new_tokens)
        ending = "ended at end-of-sequence" if reply["ended_on_eos"] else "hit the token limit"
        print(f"Reply ({ending}): {reply['text']}")
    return 0


def _audit_config(args) -> AuditConfig:
    return settings.from_dict(AuditConfig, settings.given(args, AuditConfig), owner="audit")


def print_concepts(concepts, top: int, alpha: float = 0.05) -> None:
    """The heads (the review queue) with their confirmation, selection share and members, then the
    ranked families, each with its verdict, effect size and members; the ranked single concepts
    when the audit has no families."""
    from .audit.review import describe_concept, label_check, verdict_badge

    kind = concepts["kind"] if "kind" in concepts else None
    heads = concepts[kind == "head"] if kind is not None else concepts.iloc[:0]
    if len(heads):
        print(f"\nThe review queue: {len(heads)} heads, confirmed first:")
        for _, row in heads.iterrows():
            share = row.get("selection_share")
            chosen = f"selected in {share:.0%} of prompt resamples" if share == share else "length spline"
            print(f"{int(row['rank']):>3}. [{row['concept_id']} = {row['source']}] {describe_concept(row)}")
            print(f"     {verdict_badge(row, alpha)}; {chosen}; {_listed(row['members'])}")
            if label_check(row):
                print(f"     {label_check(row)}")
    families = concepts[kind == "family"] if kind is not None else concepts.iloc[:0]
    table, noun = (families, "families") if len(families) else (concepts[kind != "head"], "concepts")
    shown = table.head(top)
    print(
        f"\nTop {len(shown)} of {len(table)} {noun} (q-values across {noun}; "
        f"{int((table['q_value'] < alpha).sum())} with q < {alpha:g}):"
    )
    for _, row in shown.iterrows():
        contribution = row.get("auc_contribution")
        extra = (
            f"; held-out AUC contribution {contribution:+.3f}"
            if contribution is not None and contribution == contribution and contribution
            else ""
        )
        under = f" (under {row['head']})" if row.get("head") else ""
        print(f"{int(row['rank']):>3}. [{row['concept_id']}]{under} {describe_concept(row)}{extra}")
        if noun == "families":
            seeds = row.get("seed_stability")
            stable = f"found by {seeds:.0%} of other SAE seeds; " if seeds is not None and seeds == seeds else ""
            print(
                f"     {verdict_badge(row, alpha)}; effect size {row['effect_size']:+.2f}; "
                f"{stable}{_listed(row['members'])}"
            )


def _listed(members) -> str:
    members = list(members)
    return "members: " + ", ".join(members[:5]) + (f", … ({len(members)} in all)" if len(members) > 5 else "")


LAUNCHED = "SPECTRUM_LAUNCHED"  # set for the processes a relaunch starts, so they never relaunch again


def _relaunch_with_accelerate(config, num_processes: int, workspace, job_id: int | None) -> int:
    """Run this same command under `accelerate launch` with ``num_processes`` processes (GPUs when
    there are enough, else CPU processes). The launcher is a child in this process group, so
    stopping the job stops every process."""
    import subprocess

    import torch

    if job_id is None:  # create the job here, so every process records into the same one
        from .stages import create_stage_job
        from .tuning.runs import TuneStage

        job_id = create_stage_job(workspace, TuneStage(config))
    # accelerate's multi-process launcher (torchrun underneath); on a machine without enough GPUs
    # the processes share the CPU (gloo). `--cpu` would start a single process.
    if 0 < torch.cuda.device_count() < num_processes:
        print(f"error: {num_processes} processes asked for but only {torch.cuda.device_count()} GPUs", file=sys.stderr)
        return 2
    argv = [a for a in sys.argv[1:]]
    if "--job-id" not in argv:
        argv += ["--job-id", str(job_id)]
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "spectrum_core.cli",
        *argv,
    ]
    return subprocess.run(command, env={**os.environ, LAUNCHED: "1"}).returncode


def cmd_tune(args) -> int:
    from .progress import TqdmProgress
    from .tuning.config import config_from_dict, preset
    from .tuning.runs import run_tuning
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    if args.resume is not None:
        config = config_from_dict(_saved_job_config(workspace, args.resume))
        job_id = args.resume
    else:
        if not hasattr(args, "plan_id"):
            raise UsageError("give --plan (a saved plan id) or --resume JOB")
        cls = CONFIG_CLASSES[args.method]
        given = settings.given(args, cls)
        foreign = [name for name, method in METHOD_OWNERS.items() if hasattr(args, name) and method != args.method]
        if foreign:
            raise UsageError(f"--method {args.method} has no setting {', '.join(foreign)}")
        values = {**settings.plain(preset(args.method, args.preset)), **_overrides(args.set), **given}
        config = config_from_dict({"method": args.method, **values})
        job_id = args.job_id
    if config.num_processes > 1 and not os.environ.get(LAUNCHED) and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _relaunch_with_accelerate(config, config.num_processes, workspace, job_id)
    bars = TqdmProgress()
    folder = run_tuning(workspace, config, job_id=job_id, progress=bars)
    bars.close()
    if int(os.environ.get("RANK", "0")) == 0:  # one report for a multi-process run
        print(f"Tuning finished: {folder}")
    return 0


def cmd_eval(args) -> int:
    from .metrics.config import eval_config_from_dict, eval_preset
    from .metrics.evaluate import evaluate_runs
    from .progress import TqdmProgress
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    if args.resume is not None:
        document = _saved_job_config(workspace, args.resume)
        runs, audit_job_id = document["runs"], document["audit_job_id"]
        config = eval_config_from_dict(document["evaluation"])
        job_id = args.resume
    else:
        values = {
            **settings.plain(eval_preset(args.preset)),
            **_overrides(args.set),
            **settings.given(args, EvalConfig),
        }
        config = eval_config_from_dict(values)
        runs, audit_job_id, job_id = args.run or ["base"], args.audit, args.job_id
    runs = sorted(dict.fromkeys(str(r) for r in runs), key=lambda r: r != "base")  # the base first
    bars = TqdmProgress()
    try:
        folders = evaluate_runs(workspace, runs, config, audit_job_id, job_id, bars)
    finally:
        bars.close()
    from .artifacts import EvaluationArtifact
    from .metrics.report import summary_lines

    for folder in folders:
        report = EvaluationArtifact(folder).report
        print(f"\nEvaluation of {report['target']}: {folder}")
        for line in summary_lines(report):
            print("  " + line)
    return 0


def cmd_audit(args) -> int:
    from .audit.runner import run_audit_in_workspace
    from .progress import TqdmProgress
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    dataset = bundled_file(HH_DEMO) if args.dataset == DEMO else args.dataset
    bars = TqdmProgress()
    outcome = run_audit_in_workspace(
        workspace, dataset, _audit_config(args), progress=bars, force=args.force, job_id=args.job_id
    )
    bars.close()
    if outcome is None:  # a helper process of a multi-process run: the main one reports
        return 0
    report = outcome.report
    state = "reused the finished audit" if outcome.reused else "finished"
    print(f"\nAudit {state} (job {outcome.job_id}): {outcome.folder}")
    versions = workspace.artifact_versions(outcome.artifact_key)
    if len(versions) > 1:
        print(
            f"Version {artifact_version(outcome.artifact_key)} of {len(versions)}; the earlier ones are kept, with "
            f"their decisions (carry them with `spectrum decisions carry --from <job> --to {outcome.job_id}`)"
        )
    sae = report.sae.get("token")
    if sae:
        print(
            f"SAE: {sae['width']} latents, k={sae['k']}, explained variance "
            f"{sae['explained_variance']:.3f}, mean L0 {sae['mean_l0']:.1f}, dead "
            f"{sae['dead_fraction']:.1%}"
        )
    for mode, joint in report.joint_models.items():
        print(
            f"Joint L1 model on {mode} Δ + length: held-out AUC {joint.auc_held_out:.3f} ({joint.n_selected} selected)"
        )
    if report.baselines is not None:
        print(report.baselines.length.sentence())
    if report.families is not None:
        print(report.families.sentence())
    if report.heads is not None:
        print(report.heads.sentence())
    if report.confirmation is not None:
        print(report.confirmation.sentence())
    if report.null is not None:
        print(report.null.sentence())
    for warning in report.warnings:
        print(f"warning: {warning}")
    if report.verdict:
        print(report.verdict)
    print_concepts(outcome.concepts, args.top, report.fdr_threshold)
    return 0


def cmd_score(args) -> int:
    """Score the pairs a sampled audit did not see for its decided concepts (or ``--concepts``)."""
    from .artifacts import ScoresArtifact
    from .audit.scoring import run_scoring
    from .progress import TqdmProgress
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    if args.resume is not None:
        config = settings.from_dict(ScoringConfig, _saved_job_config(workspace, args.resume))
        job_id = args.resume
    else:
        config, job_id = ScoringConfig(**settings.given(args, ScoringConfig)), args.job_id
    if config.audit is None:
        raise UsageError("give --audit JOB (the audit whose concepts are scored) or --resume JOB")
    bars = TqdmProgress()
    try:
        outcome = run_scoring(workspace, config, job_id=job_id, progress=bars)
    finally:
        bars.close()
    assert outcome is not None  # one process
    manifest = ScoresArtifact(outcome.folder).manifest
    state = "reused the finished scoring" if outcome.reused else "finished"
    print(f"\nScoring {state} (job {outcome.job_id}): {outcome.folder}")
    print(
        f"Scored {manifest['n_scored']:,} pairs beside the audit's {manifest['n_audited']:,} for "
        f"{len(manifest['members'])} concepts: {', '.join(manifest['members'])}"
    )
    return 0


def cmd_workspace_info(args) -> int:
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    print(f"Workspace {workspace.root} (schema version {workspace.schema_version})")
    for record in workspace.datasets():
        print(
            f"  dataset {record['id']}: {record['name']} - {record['rows_kept']} pairs "
            f"({record['schema_name']}, {record['file_format']})"
        )
    from .jobs import refresh

    for job in workspace.jobs():
        job = refresh(workspace, job.id)  # a job whose process died is "failed", not "running"
        version = artifact_version(job.artifact_key) if job.artifact_key else 1
        result = f" → {job.artifact_key}" if job.artifact_key else ""
        result += f" (version {version})" if version > 1 else ""
        print(f"  job {job.id}: {job.kind} {job.status}{result}")
    return 0


def cmd_decisions_carry(args) -> int:
    """The match table between two audits' concepts for the older one's decisions; with
    ``--apply``, the matched ones written on the newer audit."""
    from .audit.carry import CARRY_R, carry_decisions, carry_proposal
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    proposal = carry_proposal(workspace, args.source, args.target)
    if not proposal:
        print(f"Audit {args.source} has no decisions to carry.")
        return 0
    print(
        f"Decisions of audit {args.source} matched to audit {args.target} (per-pair Δ, r ≥ {CARRY_R}, same direction):"
    )
    for m in proposal:
        where = f"{m.matched} “{m.matched_label}” r={m.r:.2f}" if m.matched else "-"
        verdict = "carry" if m.carried else f"not carried: {m.why_not}"
        print(f"  {m.action:8} {m.concept_id} “{m.label}” → {where}  [{verdict}]")
    n = sum(m.carried for m in proposal)
    if not args.apply:
        print(f"{n} of {len(proposal)} would be carried; rerun with --apply to write them.")
        return 0
    written = carry_decisions(workspace, args.source, args.target, proposal)
    print(f"Carried {len(written)} of {len(proposal)} decisions to audit {args.target}.")
    return 0


# Streamlit's watching of source files: off for users, on with --dev; and no full garbage
# collection after each script run (see .streamlit/config.toml for why).
SOURCE_WATCHING = {
    False: ["--server.fileWatcherType", "none", "--server.runOnSave", "false", "--runner.postScriptGC", "false"],
    True: ["--server.fileWatcherType", "auto", "--server.runOnSave", "true", "--runner.postScriptGC", "false"],
}


def cmd_app(args) -> int:
    from .access import check_address

    mode = check_address(args.address, os.environ)  # a non-loopback address needs a login
    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.is_file():  # the library was installed without the source checkout the app lives in
        raise UsageError(
            f"the app is not installed beside the library ({app} is missing): run `make app` "
            "in a checkout of the Spectrum repository"
        )
    env = dict(os.environ)
    if args.workspace:
        env["SPECTRUM_WORKSPACE"] = str(Path(args.workspace).resolve())
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        # Also set here, not only in .streamlit/config.toml, which Streamlit reads from the
        # working directory only: watching files costs the server CPU its jobs need.
        *SOURCE_WATCHING[args.dev],
    ]
    print(f"Spectrum: open http://{args.address}:{args.port}" + (f" (login: {mode})" if mode else ""), flush=True)
    # Become the Streamlit process (rather than wait on a child), so stopping `spectrum app`
    # stops the server too.
    os.execve(sys.executable, command, env)


def _add_job_arguments(parser: argparse.ArgumentParser, example: str, resume_help: str) -> None:
    """--preset, --set, --resume and the app's hidden --job-id, shared by tune and eval."""
    parser.add_argument(
        "--preset",
        choices=["cpu-demo", "gpu"],
        default="cpu-demo",
        help="sizes for a laptop CPU with the bundled model, or for a GPU (default: cpu-demo); "
        "the flags below override it",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one setting, e.g. --set {example} (repeatable)",
    )
    parser.add_argument("--resume", type=int, metavar="JOB", help=resume_help)
    parser.add_argument("--job-id", type=int, help=argparse.SUPPRESS)  # set by the app's job runner


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectrum", description=__doc__)
    parser.add_argument("--workspace", help="workspace folder (default: $SPECTRUM_WORKSPACE or ./workspace)")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _data_commands,
        _model_commands,
        _workspace_commands,
        _audit_command,
        _decisions_commands,
        _score_command,
        _tune_command,
        _eval_command,
        _app_command,
    ):
        add_command(commands)
    return parser


def _data_commands(commands) -> None:
    """``spectrum data inspect`` and ``spectrum data add``."""
    data = commands.add_parser("data", help="preference data").add_subparsers(dest="data_command", required=True)
    inspect = data.add_parser("inspect", help="print the load report and a few pairs")
    _add_load_arguments(inspect)
    inspect.add_argument("--show", type=int, default=3, help="pairs to print (default: 3)")
    inspect.add_argument("--rejections", type=int, default=20, help="rejected rows to list (default: 20)")
    inspect.add_argument("--json", action="store_true", help="print the full report as JSON")
    inspect.set_defaults(func=cmd_data_inspect)
    add = data.add_parser("add", help="load a file into the workspace")
    _add_load_arguments(add)
    add.add_argument("--name", help="display name (default: the file name)")
    add.set_defaults(func=cmd_data_add)


def _model_commands(commands) -> None:
    """``spectrum model prepare``."""
    model = commands.add_parser("model", help="language models").add_subparsers(dest="model_command", required=True)
    prepare = model.add_parser("prepare", help="make a model ready for offline use")
    prepare.add_argument(
        "spec",
        nargs="?",
        default="bundled",
        help="'bundled' (SmolLM2-135M-Instruct, the default), a hub id, or a local folder",
    )
    prepare.add_argument("--device", default="auto")
    prepare.add_argument("--dtype", default="auto")
    prepare.add_argument("--trust-remote-code", action="store_true")
    prepare.add_argument("--generate", metavar="PROMPT", help="also answer one chat message as a check")
    prepare.add_argument("--max-new-tokens", type=int, default=64)
    prepare.set_defaults(func=cmd_model_prepare)


def _workspace_commands(commands) -> None:
    """``spectrum workspace info``."""
    workspace = commands.add_parser("workspace", help="the workspace").add_subparsers(dest="ws_command", required=True)
    info = workspace.add_parser("info", help="list datasets and jobs")
    info.set_defaults(func=cmd_workspace_info)


def _decisions_commands(commands) -> None:
    """``spectrum decisions carry``."""
    decisions = commands.add_parser("decisions", help="review decisions").add_subparsers(
        dest="decisions_command", required=True
    )
    carry = decisions.add_parser(
        "carry", help="carry an audit's decisions to a newer audit by matching concepts (never by id)"
    )
    carry.add_argument("--from", dest="source", type=int, required=True, help="the audit job decided on")
    carry.add_argument("--to", dest="target", type=int, required=True, help="the newer audit job")
    carry.add_argument("--apply", action="store_true", help="write the matched decisions (default: show the table)")
    carry.set_defaults(func=cmd_decisions_carry)


def _audit_command(commands) -> None:
    """``spectrum audit``: its settings' flags come from AuditConfig."""
    audit = commands.add_parser("audit", help="find concepts that separate chosen from rejected")
    audit.add_argument(
        "dataset",
        help="a preference file (any accepted format), a dataset id in the workspace, "
        f"or '{DEMO}' (the bundled HH-RLHF demo)",
    )
    settings.add_arguments(audit, AuditConfig)
    audit.add_argument("--top", type=int, default=20, help="concepts to print (default: 20)")
    audit.add_argument("--force", action="store_true", help="run again even if this audit exists")
    audit.add_argument("--job-id", type=int, help=argparse.SUPPRESS)  # set by the app's job runner
    audit.set_defaults(func=cmd_audit)


def _score_command(commands) -> None:
    """``spectrum score``: its settings' flags come from ScoringConfig."""
    score = commands.add_parser(
        "score",
        help="score the dataset's pairs a sampled audit did not see for its decided concepts, so a plan covers them",
    )
    settings.add_arguments(score, ScoringConfig)
    score.add_argument("--resume", type=int, metavar="JOB", help="resume that scoring job from its last finished shard")
    score.add_argument("--job-id", type=int, help=argparse.SUPPRESS)  # set by the app's job runner
    score.set_defaults(func=cmd_score)


def _tune_command(commands) -> None:
    """``spectrum tune``: its settings' flags come from every method's tuning config."""
    tune = commands.add_parser("tune", help="fine-tune on a saved intervention plan (weighted DPO, ...)")
    tune.add_argument(
        "--method",
        default="dpo",
        choices=list(CONFIG_CLASSES),
        help="dpo: weighted DPO on the shaped pairs; spectrum: Spectrum Tuning; reset: ReSet (default: dpo)",
    )
    from .tuning.config import preset

    settings.add_arguments(
        tune,
        *CONFIG_CLASSES.values(),
        owners=METHOD_OWNERS,
        default_label="cpu-demo",
        defaults=preset("dpo", "cpu-demo"),
    )
    _add_job_arguments(tune, "max_steps=50", "resume that tuning job from its last checkpoint")
    tune.set_defaults(func=cmd_tune)


def _eval_command(commands) -> None:
    """``spectrum eval``: its settings' flags come from EvalConfig."""
    evaluate = commands.add_parser(
        "eval",
        help="evaluate the base model or a tuning run (steerability, "
        "coverage, alignment, concept prevalence, reward, faithfulness, diversity)",
    )
    evaluate.add_argument(
        "--run",
        action="append",
        help="'base' (the default) or a finished tuning job's id (repeatable; the base model is evaluated first)",
    )
    evaluate.add_argument(
        "--audit",
        type=int,
        help="audit job whose SAE reads the generations (the base model's "
        "evaluation needs it for concept prevalence; a run brings its own)",
    )
    _add_job_arguments(evaluate, "coverage_prompts=2", "run that evaluation job again")
    settings.add_arguments(
        evaluate.add_argument_group(f"settings (sections: {', '.join(SECTIONS)})"), EvalConfig, default_label="cpu-demo"
    )
    evaluate.set_defaults(func=cmd_eval)


def _app_command(commands) -> None:
    """``spectrum app``."""
    app = commands.add_parser("app", help="open the Spectrum app in the browser")
    app.add_argument("--address", default="127.0.0.1", help="listen address (default: 127.0.0.1 only)")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument(
        "--dev",
        action="store_true",
        help="developer mode: watch the source files and rerun pages when they are saved (costs CPU)",
    )
    app.set_defaults(func=cmd_app)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except SpectrumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
