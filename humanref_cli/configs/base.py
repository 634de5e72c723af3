"""Config machinery: presets, ``--set a.b=value`` and TOML overrides, and the semantic key.

Stage configs are frozen dataclasses (possibly nested). A field's ``metadata`` may hold ``help`` (shown
by ``humanref config``) and ``semantic=False`` for fields that do not change the result (logging cadence,
chunk sizes); those are left out of the freshness key (design.md §3).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any

import tomllib

from humanref_cli.errors import UsageError

PRESETS = ("paper", "fast", "cpu")


def flat_keys(cls_or_obj: Any, prefix: str = "") -> dict[str, dataclasses.Field]:
    """All dotted keys of a (nested) dataclass, mapped to their leaf field."""
    out: dict[str, dataclasses.Field] = {}
    hints = typing.get_type_hints(cls_or_obj if isinstance(cls_or_obj, type) else type(cls_or_obj))
    for f in dataclasses.fields(cls_or_obj):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(flat_keys(tp, prefix + f.name + "."))
        else:
            out[prefix + f.name] = f
    return out


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Convert a string (from ``--set``) or a TOML value to the field's type, or raise UsageError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, arg, value)
            except UsageError as e:
                errors.append(e)
        raise errors[0]
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == str(value):
                return choice
        raise UsageError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [v.strip() for v in value.strip("[]() ").split(",") if v.strip()]
        if not isinstance(items, list | tuple):
            raise UsageError(f"{key} expects a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(key, args[0], v) for v in items)
        if origin is tuple and args:
            if len(items) != len(args):
                raise UsageError(f"{key} expects {len(args)} values, got {len(items)}")
            return tuple(_coerce(key, a, v) for a, v in zip(args, items, strict=True))
        return list(_coerce(key, args[0] if args else str, v) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{key} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UsageError(f"{key} expects an integer, got {value!r}")
        try:
            f = float(str(value).strip().replace("_", ""))
        except ValueError:
            raise UsageError(f"{key} expects an integer, got {value!r}") from None
        if not f.is_integer():
            raise UsageError(f"{key} expects an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(str(value).strip())
        except ValueError:
            raise UsageError(f"{key} expects a number, got {value!r}") from None
    if tp is str:
        return str(value)
    if tp is Path:
        return Path(str(value))
    raise UsageError(f"{key}: cannot set a value of type {tp}")


def _field_type(cls: type, dotted: str) -> Any:
    parts = dotted.split(".")
    for name in parts[:-1]:
        cls = typing.get_type_hints(cls)[name]
    return typing.get_type_hints(cls)[parts[-1]]


def _replace(obj: Any, parts: list[str], value: Any) -> Any:
    if len(parts) == 1:
        return dataclasses.replace(obj, **{parts[0]: value})
    child = getattr(obj, parts[0])
    return dataclasses.replace(obj, **{parts[0]: _replace(child, parts[1:], value)})


def unknown_key_error(key: str, valid: list[str], stage: str) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)  # 0.5 offered "loss_res" for "nonsense"
    if not close:  # match on the leaf name too: "lr" -> "optim.lr"
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in valid if k.rsplit(".", 1)[-1] == leaf][:3]
    hint = f"did you mean {', '.join(close)}?" if close else f"see `humanref config {stage}` for valid keys"
    return UsageError(f"unknown config key '{key}' for stage {stage}", hint=hint)


def apply_overrides(cfg: Any, overrides: dict[str, Any], stage: str) -> Any:
    """Return ``cfg`` with dotted-key overrides applied and type-checked.

    Keys may be prefixed by the stage name (``coarse.lr`` on stage ``coarse``). An unknown key raises
    ``UsageError`` (exit 2) suggesting the closest valid keys.
    """
    valid = flat_keys(cfg)
    for raw_key, value in overrides.items():
        key = raw_key[len(stage) + 1 :] if raw_key.startswith(stage + ".") else raw_key
        if key not in valid:
            raise unknown_key_error(key, sorted(valid), stage)
        tp = _field_type(type(cfg), key)
        cfg = _replace(cfg, key.split("."), _coerce(key, tp, value))
    return cfg


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": "1", "c": "x"}``; a malformed item is a UsageError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {item!r}", hint="e.g. --set lambda_rgb=1000")
        out[key.strip()] = value.strip()
    return out


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def load_toml_overrides(path: Path, stage: str, stages: tuple[str, ...]) -> dict[str, Any]:
    """Overrides for ``stage`` from a TOML file: its ``[stage]`` table, or top-level keys if the file
    has no stage tables at all."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None
    if any(s in data and isinstance(data[s], dict) for s in stages):
        return _flatten(data.get(stage, {}))
    return _flatten(data)


def to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def semantic_dict(cfg: Any) -> dict[str, Any]:
    """The config without fields marked ``semantic=False`` (they don't change results)."""
    full = to_dict(cfg)
    for key, f in flat_keys(cfg).items():
        if f.metadata.get("semantic", True) is False:
            node = full
            parts = key.split(".")
            for p in parts[:-1]:
                node = node[p]
            node.pop(parts[-1], None)
    return full


def config_hash(cfg: Any) -> str:
    blob = json.dumps(semantic_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def describe(cfg: Any) -> list[tuple[str, str, str]]:
    """``(key, value, help)`` rows for every leaf field, for ``humanref config STAGE``."""
    rows = []
    for key, f in flat_keys(cfg).items():
        node = cfg
        for p in key.split("."):
            node = getattr(node, p)
        rows.append((key, json.dumps(node, default=str), f.metadata.get("help", "")))
    return rows
