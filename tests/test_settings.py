"""Config dataclasses → flags, checks, and the exact command back: on the real configs."""

from __future__ import annotations

import argparse

import pytest

from spectrum_core import settings
from spectrum_core.audit.config import AuditConfig
from spectrum_core.errors import ConfigError, SpectrumError
from spectrum_core.metrics.config import EvalConfig
from spectrum_core.tuning.config import DPORunConfig, ReSetRunConfig, SpectrumRunConfig, config_from_dict, preset


def parse(cls, argv):
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, cls)
    return settings.given(parser.parse_args(argv), cls)


def test_types_choices_lists_and_optionals_come_from_the_annotations():
    found = {s.name: s for s in settings.settings_of(AuditConfig)}
    assert found["pooling"].choices == ("max", "mean") and found["pooling"].kind is str
    assert found["modes"].is_list and found["modes"].choices == ("token", "difference")
    assert found["layer"].optional and found["layer"].kind is int
    assert all(s.help for s in found.values())
    assert found["sae_width"].flags == ("--width",)


def test_flags_parse_to_typed_values():
    values = parse(AuditConfig, ["--layer", "none", "--modes", "token", "--pooling", "mean", "--width", "64"])
    assert values == {"layer": None, "modes": ["token"], "pooling": "mean", "sae_width": 64}
    assert parse(ReSetRunConfig, ["--temperatures", "0.5", "1.2"])["temperatures"] == [0.5, 1.2]
    assert parse(ReSetRunConfig, ["--no-caft"])["caft"] is False
    assert parse(AuditConfig, ["--modes", "token,difference"])["modes"] == ["token", "difference"]
    with pytest.raises(SystemExit):
        parse(AuditConfig, ["--pooling", "median"])
    with pytest.raises(SystemExit):
        parse(AuditConfig, ["--layer", "middle"])


def test_values_are_checked_and_coerced_whatever_their_source():
    assert SpectrumRunConfig(families="chat, coin").families == ("chat", "coin")  # comma text from YAML or --set
    assert ReSetRunConfig(temperatures=[1, "0.5"]).temperatures == (1.0, 0.5)
    with pytest.raises(ConfigError, match="pooling must be one of max, mean"):
        AuditConfig(pooling="median")
    with pytest.raises(ConfigError, match="whole number"):
        AuditConfig(max_pairs=2.5)
    with pytest.raises(ConfigError, match="must be true or false"):
        ReSetRunConfig(caft="yes")
    with pytest.raises(ConfigError, match="unknown setting.*beta"):
        config_from_dict({"method": "reset", "beta": 0.2})
    with pytest.raises(SpectrumError):
        EvalConfig(steer_families=("dice",))


@pytest.mark.parametrize(
    "config",
    [
        AuditConfig(layer=3, modes=("difference",), max_pairs=None, dtype="float32", sae_k=8),
        config_from_dict({"method": "reset", "temperatures": [0.3], "caft": True, "max_train_pairs": None}),
        EvalConfig(steer_families=("coin",), every_checkpoint=False, coverage_temperature=0.5),
    ],
)
def test_cli_args_reproduce_the_config(config):
    base = type(config)() if not hasattr(config, "method") else preset(config.method, "cpu-demo")
    argv = settings.cli_args(config, base)
    rebuilt = type(config)(
        **{**{s.name: getattr(base, s.name) for s in settings.settings_of(type(config))}, **parse(type(config), argv)}
    )
    assert rebuilt == config
    assert settings.cli_args(base, base) == []


def test_plain_is_yaml_ready():
    import yaml

    text = yaml.safe_dump(settings.plain(SpectrumRunConfig()))
    assert yaml.safe_load(text)["families"] == list(SpectrumRunConfig().families)


FORM_CLASSES = (AuditConfig, DPORunConfig, SpectrumRunConfig, ReSetRunConfig, EvalConfig)


@pytest.mark.parametrize("cls", FORM_CLASSES, ids=lambda c: c.__name__)
def test_every_form_setting_is_named_in_words(cls):
    """The forms show a setting's label, never its code name (``sae_k``); a setting hidden while
    its switch is off names a real on/off setting of the same class."""
    known = {s.name: s for s in settings.settings_of(cls)}
    for item in known.values():
        if not item.form:
            continue
        assert item.label and "_" not in item.label and item.label != item.name, item.name
        if item.needs:
            assert known[item.needs].kind is bool, item.name
