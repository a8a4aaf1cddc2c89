"""Typed stage settings built from plain mappings (a config section, a JSON string or file).

Each stage declares its settings as a frozen dataclass with defaults. :func:`from_mapping`
fills one from a mapping and refuses unknown keys, naming the closest valid key, so a typo in
the config is an error rather than a silently ignored value.

The rules on each value (types, ranges, choices) have one home: the workflow's config schema
(``crnn/schemas/config.schema.yaml``, linked from ``workflow/schemas/``). A dataclass names its node there in a ``SCHEMA``
class variable (e.g. ``"training"``, ``"models.*"``), and :func:`from_mapping` validates what it
built against that node, so the CLI refuses what the workflow refuses (``--epochs 0`` as
``training.epochs: 0``). Values the CLI takes outside a dataclass are checked with
:func:`check_value`. Rules that tie several values together stay in the dataclasses' ``check()``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from crnn.errors import CrnnError

T = TypeVar("T")


def load_mapping(text_or_path: str | None) -> dict[str, Any]:
    """Parse ``--settings``: a JSON/YAML string, or the path of a JSON/YAML file."""
    if not text_or_path:
        return {}
    source = text_or_path
    p = Path(text_or_path)
    if len(text_or_path) < 4096 and p.suffix in (".json", ".yaml", ".yml"):
        if not p.exists():
            msg = f"{p}: settings file not found"
            raise CrnnError(msg)
        source = p.read_text()
    try:
        value = json.loads(source)
    except json.JSONDecodeError:
        try:
            value = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            msg = f"settings: neither JSON nor YAML: {exc}"
            raise CrnnError(msg) from exc
    if not isinstance(value, dict):
        msg = f"settings: expected a mapping of key: value, got {type(value).__name__}"
        raise CrnnError(msg)
    return value


SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


@functools.lru_cache(maxsize=1)
def config_schema() -> dict[str, Any]:
    """The workflow's config schema: the rules on every setting."""
    try:
        return yaml.safe_load(SCHEMA_FILE.read_text())
    except OSError as exc:
        msg = f"{SCHEMA_FILE}: cannot read the config schema that holds the rules on every setting ({exc.strerror})"
        raise CrnnError(msg) from exc


def schema_node(path: str) -> dict[str, Any]:
    """The schema of one setting: ``path`` is dotted, ``*`` for an entry of a keyed section (models.*)
    and ``[]`` for an item of a list (simulate.cw_lines.[])."""
    node = config_schema()
    for key in path.split("."):
        node = node["additionalProperties"] if key == "*" else node["items"] if key == "[]" else node["properties"][key]
    return node


def check_value(value: Any, path: str, where: str) -> None:
    """Raise CrnnError (one line, naming ``where``) when ``value`` breaks the schema's rule at ``path``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema_node(path))
    error = jsonschema.exceptions.best_match(validator.iter_errors(_plain(value)))
    if error is not None:
        at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        msg = f"{where}{at}: {error.message}"
        raise CrnnError(msg)


def check_minimum(value: int | float, minimum: int | float, where: str) -> None:
    """Raise CrnnError (one line, in the schema's words) when a flag that no config setting carries
    (e.g. ``--chunk-size``) is below ``minimum``."""
    if value < minimum:
        msg = f"{where}: {value} is less than the minimum of {minimum}"
        raise CrnnError(msg)


def validate(obj: Any, where: str = "settings") -> None:
    """Check a settings dataclass against its node of the schema (its ``SCHEMA`` class variable)."""
    path = getattr(type(obj), "SCHEMA", None)
    if path is not None:
        check_value(to_mapping(obj), path, where)


def _plain(value: Any) -> Any:
    """JSON types (tuples become lists, dataclasses dicts), as the schema knows them."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_mapping(value)
    return json.loads(json.dumps(value, default=list))


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, where: str = "settings") -> T:
    """Build dataclass ``cls`` from ``mapping``; unknown keys raise with a suggestion, values that
    break the schema's rules (its ``SCHEMA`` node) raise naming the key, the rule and the value."""
    mapping = dict(mapping or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"{where}: unknown key {key!r}{hint} (valid keys: {', '.join(sorted(fields))})"
            raise CrnnError(msg)
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    obj = cls(**kwargs)
    validate(obj, where)
    return obj


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_mapping(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of a settings dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=list))


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "a string", tuple: "a list"}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _coerce(value, non_none[0], where)
        for option in non_none:  # the first member that takes the value (e.g. int | tuple[int, ...])
            try:
                return _coerce(value, option, where)
            except CrnnError:
                pass
        kinds = " or ".join(_KIND.get(typing.get_origin(o) or o, getattr(o, "__name__", str(o))) for o in non_none)
        msg = f"{where}: expected {kinds}, got {value!r}"
        raise CrnnError(msg)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            msg = f"{where}: expected a list, got {value!r}"
            raise CrnnError(msg)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            msg = f"{where}: expected a list of {len(args)} values, got {value!r}"
            raise CrnnError(msg)
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"{where}: expected a number, got {value!r}"
            raise CrnnError(msg)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{where}: expected an integer, got {value!r}"
            raise CrnnError(msg)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            msg = f"{where}: expected true or false, got {value!r}"
            raise CrnnError(msg)
        return value
    if hint is str:
        if not isinstance(value, str):
            msg = f"{where}: expected a string, got {value!r}"
            raise CrnnError(msg)
        return value
    return value


def yaml_flow(value: Any) -> str:
    """``value`` in YAML flow style (PyYAML's, which writes floats as ``1.0e-08`` so that YAML 1.1
    readers such as Snakemake read them back as numbers)."""
    plain = json.loads(
        json.dumps(value, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else list(o))
    )
    return yaml.safe_dump({"v": plain}, default_flow_style=True, width=10**9).strip()[len("{v: ") : -1]


def settings_listing(cls: type, path: str | None = None, indent: int = 0) -> list[str]:
    """Every key that settings dataclass ``cls`` accepts, as YAML lines: ``key: default`` with the
    schema's description as a comment; nested settings indented under their key. ``path`` is the
    schema node (default: ``cls.SCHEMA``)."""
    path = path or cls.SCHEMA
    try:
        props = schema_node(path).get("properties", {})
    except KeyError:
        props = {}
    default = cls()
    pad = " " * indent
    lines: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(default, f.name)
        about = " ".join(str(props.get(f.name, {}).get("description", "")).split())
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:" + (f"  # {about}" if about else ""))
            lines += settings_listing(type(value), f"{path}.{f.name}", indent + 2)
            continue
        shown = yaml_flow(value)
        lines.append(f"{pad}{f.name}: {shown}" + (f"  # {about}" if about else ""))
    return lines


def add_print_settings(parser: Any, flag: str, classes: Mapping[str, type | str]) -> None:
    """``--print-settings``: print every key of ``classes`` (the option that takes each, e.g.
    ``{"--settings": SimulationSettings}``; a class may be named ``"module:Class"``, imported only
    when asked, so that a stage's help need not import Keras) with its default and meaning, then exit 0."""
    import argparse
    import importlib

    class _Print(argparse.Action):
        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
            import os

            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before a class's module imports Keras
            out = []
            for option, cls in classes.items():
                if isinstance(cls, str):
                    module, _, name = cls.partition(":")
                    cls = getattr(importlib.import_module(module), name)
                out.append(
                    f"# {parser.prog} {option}: every key, its default and what it means "
                    f"(the config's {cls.SCHEMA} section; units in the names)"
                )
                out += settings_listing(cls)
            print("\n".join(out))
            parser.exit(0)

    parser.add_argument(
        flag,
        nargs=0,
        action=_Print,
        help="print every key that " + " and ".join(classes) + " accept, with defaults, and exit",
    )
