"""The ``spectrum`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .data import SCHEMAS, DataLoadError, SchemaError, describe_pair, load_preferences
from .models import ModelNotAvailableError

DEMO_DATASET = Path(__file__).resolve().parent.parent / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def _column_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for item in pairs or []:
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise SystemExit(f"--map takes FIELD=COLUMN (e.g. chosen=good), got {item!r}")
        mapping[field.strip()] = column.strip()
    return mapping


def _load_options(args) -> dict:
    return {"schema": args.schema, "column_map": _column_map(args.map) or None,
            "file_format": args.format, "max_text_chars": args.max_text_chars}


def _add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="JSONL, JSON, CSV, TSV or Parquet (optionally .gz), or a "
                        "folder saved with datasets' save_to_disk")
    parser.add_argument("--schema", choices=list(SCHEMAS), help="skip detection and use this schema")
    parser.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                        help="map one of your columns to a field, e.g. --map chosen=good (repeatable)")
    parser.add_argument("--format", help="override the format guessed from the file name")
    parser.add_argument("--max-text-chars", type=int, default=200_000,
                        help="reject rows with a text longer than this (default: 200000)")


def cmd_data_inspect(args) -> int:
    options = {k: v for k, v in _load_options(args).items() if v is not None}
    dataset = load_preferences(args.file, **options)
    if args.json:
        print(json.dumps(dataset.report.to_dict(), indent=1, ensure_ascii=False, default=str))
        return 0
    print(dataset.report.summary(max_examples=args.rejections))
    split_counts = dataset.pairs["split"].value_counts().to_dict()
    print(f"Split (grouped by prompt): train {split_counts.get('train', 0)}, "
          f"held out {split_counts.get('held_out', 0)}")
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
    print(f"Dataset {record['id']} ({record['name']}) {state}: {record['rows_kept']} pairs kept, "
          f"{record['rows_rejected']} rejected, {record['duplicates_merged']} duplicates merged.")
    return 0


def cmd_model_prepare(args) -> int:
    from .models import chat_generate, load_model

    started = time.perf_counter()
    loaded = load_model(args.spec, device=args.device, dtype=args.dtype,
                        trust_remote_code=args.trust_remote_code)
    print(f"Model {loaded.spec} ready at {loaded.path} ({loaded.info['n_layers']} layers, "
          f"hidden size {loaded.info['hidden_size']}) on {loaded.device} as "
          f"{str(loaded.dtype).removeprefix('torch.')}; {time.perf_counter() - started:.1f} s.")
    if args.generate:
        reply = chat_generate(loaded, [{"role": "user", "content": args.generate}],
                              max_new_tokens=args.max_new_tokens)
        ending = "ended at end-of-sequence" if reply["ended_on_eos"] else "hit the token limit"
        print(f"Reply ({ending}): {reply['text']}")
    return 0


def cmd_workspace_info(args) -> int:
    from .workspace import Workspace

    workspace = Workspace(args.workspace)
    print(f"Workspace {workspace.root} (schema version {workspace.schema_version})")
    for record in workspace.datasets():
        print(f"  dataset {record['id']}: {record['name']} - {record['rows_kept']} pairs "
              f"({record['schema_name']}, {record['file_format']})")
    for job in workspace.jobs():
        print(f"  job {job['id']}: {job['kind']} {job['status']}")
    return 0


def cmd_app(args) -> int:
    app = Path(__file__).resolve().parent.parent / "app.py"
    env = dict(os.environ)
    if args.workspace:
        env["SPECTRUM_WORKSPACE"] = str(Path(args.workspace).resolve())
    command = [sys.executable, "-m", "streamlit", "run", str(app),
               "--server.address", args.address, "--server.port", str(args.port),
               "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    print("Spectrum: open http://%s:%d" % (args.address, args.port), flush=True)
    # Become the Streamlit process (rather than wait on a child), so stopping `spectrum app`
    # stops the server too.
    os.execve(sys.executable, command, env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spectrum", description=__doc__)
    parser.add_argument("--workspace", help="workspace folder (default: $SPECTRUM_WORKSPACE or ./workspace)")
    commands = parser.add_subparsers(dest="command", required=True)

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

    model = commands.add_parser("model", help="language models").add_subparsers(dest="model_command", required=True)
    prepare = model.add_parser("prepare", help="make a model ready for offline use")
    prepare.add_argument("spec", nargs="?", default="bundled",
                         help="'bundled' (SmolLM2-135M-Instruct, the default), a hub id, or a local folder")
    prepare.add_argument("--device", default="auto")
    prepare.add_argument("--dtype", default="auto")
    prepare.add_argument("--trust-remote-code", action="store_true")
    prepare.add_argument("--generate", metavar="PROMPT", help="also answer one chat message as a check")
    prepare.add_argument("--max-new-tokens", type=int, default=64)
    prepare.set_defaults(func=cmd_model_prepare)

    workspace = commands.add_parser("workspace", help="the workspace").add_subparsers(dest="ws_command", required=True)
    info = workspace.add_parser("info", help="list datasets and jobs")
    info.set_defaults(func=cmd_workspace_info)

    app = commands.add_parser("app", help="open the Spectrum app in the browser")
    app.add_argument("--address", default="127.0.0.1", help="listen address (default: 127.0.0.1 only)")
    app.add_argument("--port", type=int, default=8501)
    app.set_defaults(func=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataLoadError, SchemaError, ModelNotAvailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
