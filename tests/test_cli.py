"""The command line on the bundled data."""

from __future__ import annotations

import json
import re

import pytest

from spectrum_core.cli import main
from tests.conftest import HH_FILE, LLAMAFACTORY_FILE


def test_data_inspect_prints_report_and_pairs(capsys):
    assert main(["data", "inspect", str(HH_FILE), "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "Rows read: 2312   kept: 2303   rejected: 9" in out
    assert "line 87, field 'chosen': empty response" in out
    assert out.count("PROMPT:") == 2 and "Split (grouped by prompt)" in out


def test_data_inspect_json(capsys):
    assert main(["data", "inspect", str(LLAMAFACTORY_FILE), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["duplicates_merged"] == 5 and report["schema"] == "llamafactory"


def test_bad_file_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "pairs.csv"
    path.write_text("question,answer\nhi,there\n")
    assert main(["data", "inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: No accepted schema") and "Traceback" not in err
    assert (
        main(
            [
                "data",
                "inspect",
                str(path),
                "--map",
                "prompt=question",
                "--map",
                "chosen=answer",
                "--map",
                "rejected=question",
            ]
        )
        == 0
    )


def test_data_add_and_workspace_info(tmp_path, capsys):
    workspace = str(tmp_path / "ws")
    assert main(["--workspace", workspace, "data", "add", str(LLAMAFACTORY_FILE)]) == 0
    assert main(["--workspace", workspace, "data", "add", str(LLAMAFACTORY_FILE)]) == 0
    out = capsys.readouterr().out
    assert "added: 295 pairs kept" in out and "already in the workspace" in out
    assert main(["--workspace", workspace, "workspace", "info"]) == 0
    assert "dataset 1: llamafactory-dpo-en-demo.jsonl - 295 pairs" in capsys.readouterr().out


def test_model_prepare_and_check(capsys, bundled_model):
    assert main(["model", "prepare", "--generate", "Say hello."]) == 0
    out = capsys.readouterr().out
    assert "Model bundled ready" in out and "30 layers" in out
    assert "ended at end-of-sequence" in out


def test_unreachable_hub_model_is_one_line(capsys):
    assert main(["model", "prepare", "spectrum-tests/no-such-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("error: Model spectrum-tests/no-such-model is not in the local Hugging Face cache")


def test_audit_command_runs_then_reuses(tmp_path, capsys, bundled_model):
    args = [
        "--workspace",
        str(tmp_path / "ws"),
        "audit",
        str(LLAMAFACTORY_FILE),
        "--max-pairs",
        "40",
        "--max-prompt-tokens",
        "96",
        "--max-response-tokens",
        "96",
        "--training-tokens",
        "60000",
        "--top",
        "5",
        "--null-runs",
        "2",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Audit finished" in out and "Top 5 of" in out and "Joint L1 model on token" in out
    assert "discovery pairs" in out and "On shuffled preferences (chosen and rejected swapped" in out
    queue = re.search(r"The review queue: (\d+) heads", out)
    heads = int(queue.group(1)) if queue else 0
    assert out.count("responses have more of") + out.count("no direction") == 5 + heads
    assert main(args) == 0
    assert "reused the finished audit" in capsys.readouterr().out


def test_audit_with_too_few_pairs_is_a_clean_error(tmp_path, capsys):
    args = ["--workspace", str(tmp_path / "ws"), "audit", str(LLAMAFACTORY_FILE), "--max-pairs", "5"]
    assert main(args) == 2
    assert "at least 10 pairs" in capsys.readouterr().err


def audit_cli_args(dataset_id: int, config) -> list[str]:
    from spectrum_core.audit.config import AuditConfig
    from spectrum_core.settings import cli_args

    return ["audit", str(dataset_id), *cli_args(config, AuditConfig())]


def test_audit_cli_args_round_trip():
    from spectrum_core.audit.config import AuditConfig
    from spectrum_core.cli import _audit_config, build_parser

    config = AuditConfig(
        layer=10,
        sae="/tmp/sae",
        max_pairs=300,
        modes=("token",),
        pooling="mean",
        seed=3,
        dtype="bfloat16",
        sae_width=1024,
        max_prompt_tokens=256,
    )
    parsed = _audit_config(build_parser().parse_args(audit_cli_args(7, config)))
    assert parsed == config
    assert audit_cli_args(7, AuditConfig()) == ["audit", "7"]


def test_library_errors_are_one_line_and_exit_2(tmp_path, capsys):
    workspace = ["--workspace", str(tmp_path / "ws")]
    for argv, message in [
        (["tune", "--plan", "999"], "No plan 999"),
        (["tune", "--plan", "1", "--method", "reset", "--beta", "0.2"], "--method reset has no setting beta"),
        (["eval", "--run", "5"], "no tuning job '5'"),
        (["eval", "--steer-families", "dice"], "unknown steerability families"),
        (["tune", "--resume", "3"], "job 3 has no config.yaml"),
    ]:
        assert main([*workspace, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, (argv, err)


def test_help_is_generated_from_the_configs(capsys):
    for command, expected in [
        (
            "tune",
            [
                "{dpo,spectrum,reset}",
                "--learning-rate",
                "--ia2-priming",
                "--caft",
                "--temperatures",
                "[reset only]",
                "(cpu-demo: 20)",
            ],
        ),
        ("eval", ["steerability, coverage, alignment", "--coverage-prompts", "--every-checkpoint"]),
        ("audit", ["--pooling {max,mean}", "--modes {token,difference}", "--width"]),
    ]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for part in expected:
            assert part in text, (command, part)


def test_the_app_server_watches_no_files_unless_in_developer_mode(monkeypatch):
    """Streamlit's file watcher re-walks the tree whenever a job writes; the shipped server runs
    without it (and without rerun-on-save), `--dev` turns both back on."""
    import spectrum_core.cli as cli

    launched = []

    def execve(path, command, env):
        launched.append(command)
        return 0

    monkeypatch.setattr(cli.os, "execve", execve)
    for argv, watcher, rerun in ((["app"], "none", "false"), (["app", "--dev"], "auto", "true")):
        cli.main(argv)
        command = launched[-1]
        assert command[command.index("--server.fileWatcherType") + 1] == watcher
        assert command[command.index("--server.runOnSave") + 1] == rerun
        assert command[command.index("--runner.postScriptGC") + 1] == "false"
    import tomllib

    from tests.conftest import ROOT

    shipped = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert shipped["server"]["fileWatcherType"] == "none" and shipped["server"]["runOnSave"] is False
    assert shipped["runner"]["postScriptGC"] is False
