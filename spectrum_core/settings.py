"""Config dataclasses as the one source of truth for settings: their fields' types and metadata
make the command line's flags (with choices and help), check values, and describe the app's forms.

A field declares its help with ``setting(default, "help", ...)``. Its annotation says the rest:
``Literal[...]`` gives choices, ``tuple[X, ...]`` a list (``--flag a b`` on the command line, a
list in YAML, and comma-separated text is accepted too), ``X | None`` a value that may be left
unset (``none`` on the command line), ``bool`` a ``--flag / --no-flag`` pair.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

NONE_WORDS = ("none", "null", "")  # what leaves an optional setting unset on the command line


def setting(
    default: Any,
    help: str,
    *,
    label: str = "",
    advanced: bool = False,
    needs: str | None = None,
    flags: tuple[str, ...] = (),
    form: bool = True,
    **kwargs,
) -> Any:
    """A dataclass field with its help text (and extra command-line spellings in ``flags``).
    For the app's forms: ``label`` is the help text's short name in words, ``advanced`` puts it
    under the form's advanced settings, ``needs`` names the on/off setting without which it does
    nothing (hidden while that is off); ``form=False`` keeps it off the forms (set from the
    context, e.g. the plan)."""
    metadata = {"help": help, "flags": flags, "form": form, "label": label, "advanced": advanced, "needs": needs}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass(frozen=True)
class Setting:
    """One field, read from its annotation and metadata."""

    name: str
    kind: type  # int, float, str or bool (for a list: of its items)
    default: Any
    help: str
    choices: tuple | None = None
    is_list: bool = False
    optional: bool = False
    flags: tuple[str, ...] = ()
    form: bool = True
    label: str = ""  # the form's name for it, in words
    advanced: bool = False
    needs: str | None = None  # the bool setting that must be on for this one to matter

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """One command-line word as this setting's (item) type."""
        if self.optional and text.strip().lower() in NONE_WORDS:
            return None
        try:
            return self.kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{self.flag} wants a {self.kind.__name__}, got {text!r}") from exc

    def coerce(self, value: Any, owner: str) -> Any:
        """A value from YAML, a form or the command line, as this setting's type (or ConfigError)."""
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{owner}: {self.name} cannot be empty")
        if self.is_list:
            items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
            return tuple(self._item(item, owner) for item in items)
        return self._item(value, owner)

    def _item(self, value: Any, owner: str) -> Any:
        if self.kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{owner}: {self.name} must be true or false, got {value!r}")
        if self.kind is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{owner}: {self.name} must be a whole number, got {value!r}")
        try:
            value = self.kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{owner}: {self.name} must be a {self.kind.__name__}, got {value!r}") from exc
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{owner}: {self.name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        return value


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (it, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


# A plain dict, not functools.cache: typeshed's cache wants Hashable arguments, which mypy does not
# see ``type[Any]`` as.
_SETTINGS: dict[type, tuple[Setting, ...]] = {}


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The settings a config class declares (its ``init`` fields), in declaration order (cached)."""
    cached = _SETTINGS.get(cls)
    if cached is None:
        cached = _SETTINGS[cls] = _read_settings(cls)
    return cached


def _read_settings(cls: type) -> tuple[Setting, ...]:
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        annotation, optional = _unwrap(hints[f.name])
        is_list = typing.get_origin(annotation) is tuple
        if is_list:
            annotation = typing.get_args(annotation)[0]
        choices = None
        if typing.get_origin(annotation) is Literal:
            choices = typing.get_args(annotation)
            annotation = type(choices[0])
        default = (
            f.default if f.default is not dataclasses.MISSING else typing.cast("Callable[[], Any]", f.default_factory)()
        )
        found.append(
            Setting(
                f.name,
                annotation,
                default,
                f.metadata.get("help", ""),
                choices,
                is_list,
                optional,
                tuple(f.metadata.get("flags", ())),
                f.metadata.get("form", True),
                f.metadata.get("label", ""),
                f.metadata.get("advanced", False),
                f.metadata.get("needs"),
            )
        )
    return tuple(found)


def validate(config: Any) -> None:
    """Coerce every setting of a config instance to its declared type; for ``__post_init__``."""
    owner = type(config).__name__
    for item in settings_of(type(config)):
        object.__setattr__(config, item.name, item.coerce(getattr(config, item.name), owner))


def from_dict(cls: type, values: dict, owner: str | None = None) -> Any:
    """A config from YAML, a form or ``--set`` values; unknown names are refused by name."""
    known = {s.name for s in settings_of(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{owner or cls.__name__}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{owner or cls.__name__}: {exc}") from exc


def plain(config: Any) -> dict:
    """The config as plain data (lists, not tuples) for YAML, JSON and artifact keys."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_arguments(
    parser, *classes: type, defaults: Any = None, default_label: str = "default", owners: dict[str, str] | None = None
) -> None:
    """A flag for every setting of ``classes`` (a setting shared by several is added once). Flags
    default to "not given", so a preset or a saved config fills what the user did not set;
    ``defaults`` (a config instance) is what the help shows. ``owners`` notes settings that only
    some variants use (e.g. ``{"beta": "dpo"}``)."""
    seen: set[str] = set()
    for cls in classes:
        for item in settings_of(cls):
            if item.name in seen:
                continue
            seen.add(item.name)
            shown = getattr(defaults, item.name, item.default) if defaults is not None else item.default
            shown = " ".join(map(str, shown)) if isinstance(shown, tuple) else "none" if shown is None else shown
            note = f" [{owners[item.name]} only]" if owners and item.name in owners else ""
            text = f"{item.help}{note} ({default_label}: {shown})".replace("%", "%%")
            options: dict[str, Any] = {"dest": item.name, "default": argparse.SUPPRESS, "help": text}
            if item.kind is bool and not item.is_list:
                options["action"] = argparse.BooleanOptionalAction
            elif item.is_list:  # words may also hold comma-separated items: split and checked in given()
                options.update(
                    nargs="+",
                    metavar="{" + ",".join(item.choices) + "}" if item.choices else METAVARS.get(item.kind, "VALUE"),
                )
            else:
                options.update(type=item.parse, metavar=METAVARS.get(item.kind, "VALUE"))
                if item.choices is not None:
                    options.update(choices=item.choices, metavar=None)
            parser.add_argument(item.flag, *item.flags, **options)


def given(args: argparse.Namespace, cls: type) -> dict:
    """The settings of ``cls`` the user gave on the command line (lists flattened: a word may also
    hold comma-separated items)."""
    values = {}
    for item in settings_of(cls):
        if hasattr(args, item.name):
            value = getattr(args, item.name)
            if item.is_list:
                value = [item.parse(part) for word in value for part in word.split(",") if part.strip()]
            values[item.name] = value
    return values


def cli_args(config: Any, base: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that turn ``base`` into ``config`` (what the app shows as the exact command)."""
    args: list[str] = []
    for item in settings_of(type(config)):
        value = getattr(config, item.name)
        if item.name in skip or value == getattr(base, item.name, item.default):
            continue
        if item.kind is bool and not item.is_list:
            args.append(item.flag if value else "--no-" + item.flag[2:])
        elif item.is_list:
            args += [item.flag, *map(str, value)]
        else:
            args += [item.flag, "none" if value is None else str(value)]
    return args
