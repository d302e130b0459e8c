"""Loading a config: YAML (duplicate keys refused) plus dotted ``key=value`` overrides, coerced to
the schema's types with did-you-mean hints, then checked (:mod:`.checks`) before any compute.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from .checks import _hint
from .schema import RunConfig


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(key, args, value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"{value!r} is not allowed.",
                              f"choose one of {list(args)}" + _hint(str(value), map(str, args)))
        return value
    if origin is list:
        return _coerce_list(key, args, value)
    if origin is dict:
        return _coerce_dict(key, args, value)
    if tp is float:
        return _coerce_float(key, value)
    return _coerce_scalar(key, tp, value)


def _coerce_union(key: str, args: tuple, value: Any) -> Any:
    """None where the union allows it, else the first member type that accepts ``value``."""
    if value is None and type(None) in args:
        return None
    inner = [a for a in args if a is not type(None)]
    errors = []
    for tp_ in inner:  # e.g. Union[float, Literal["auto"]]: the first type that fits
        try:
            return _coerce(key, tp_, value)
        except ConfigError as e:
            errors.append(e)
    raise ConfigError(key, errors[0].problem, " Or: ".join(e.fix for e in errors if e.fix))


def _coerce_list(key: str, args: tuple, value: Any) -> list:
    """``list[args[0]]``: each item coerced; None is the empty list."""
    if value is None:  # `key=null` on the command line empties a list
        return []
    if not isinstance(value, list):
        raise ConfigError(key, f"{value!r} is not a list.", "write a YAML list, e.g. [a, b].")
    return [_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value)]


def _coerce_dict(key: str, args: tuple, value: Any) -> dict:
    """``dict[str, args[1]]``: each value coerced; None is the empty mapping."""
    if value is None:  # `data.columns=null` unsets the whole mapping
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"{value!r} is not a mapping.", "write a YAML mapping.")
    # `data.columns.input=null` unsets one entry (a value no mapping can hold)
    return {str(k): _coerce(f"{key}.{k}", args[1], v) for k, v in value.items()
            if v is not None}


def _coerce_float(key: str, value: Any) -> float:
    """A finite float from a number (or a numeric string); bools are refused."""
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"{value!r} is not a number.", "write a number, e.g. 0.3.")
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if not math.isfinite(value):
        raise ConfigError(key, f"{value!r} is not a finite number (NaN and infinity are "
                               "not allowed).", "write a finite number, e.g. 0.3.")
    return value


def _coerce_scalar(key: str, tp: Any, value: Any) -> Any:
    """int, bool and str checked strictly (a bool is no int); any other annotation as given."""
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"{value!r} is not an integer.", "write a whole number.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"{value!r} is not true/false.", "write true or false.")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(key, f"{value!r} is not a string.", "quote the value.")
        return str(value)
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in fields:
            raise ConfigError(key, "unknown key.", "remove it or correct its name" + _hint(k, fields))
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, dict):
                raise ConfigError(key, f"is a section, got {v!r}.", f"write {key}: {{...}}.")
            kwargs[k] = _build(tp, v, prefix=f"{key}.")
        else:
            kwargs[k] = _coerce(key, tp, v)
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"'{p}' is not a section.", "check the key path.")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key=value.",
                              "e.g. select.budget=0.5")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p.strip() or p != p.strip() for p in parts):
            raise ConfigError(item, f"the key {key!r} before '=' is empty or has an empty part.",
                              "write a dotted key such as select.budget=0.5 (no spaces, no "
                              "'..').")
        value = _yaml_load(raw, f"override {item!r}", key=key) if raw.strip() else ""
        _set_dotted(out, key, value)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice (YAML would keep the last
    one silently, so a config could say two things and mean one)."""

    source = "<yaml>"

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: merged by super(); an own key may override it
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let PyYAML report it
                continue
            if first is not None:
                raise ConfigError(str(key), f"duplicate key in {self.source} at line {line} "
                                            f"(first set at line {first}).",
                                  "keep one of the two lines.")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_load(text: str, source: str, key: str | None = None):
    """Parse YAML text; syntax errors and duplicate keys become ConfigError naming ``source``
    (and the override's ``key`` for a value given on the command line)."""
    loader = _UniqueKeyLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if key is not None:
            raise ConfigError(key, f"the value {text!r} is not valid YAML{where}: {problem}.",
                              "fix the value's YAML syntax (lists: [a, b]; mappings: {a: 1}; "
                              "quote strings containing ':', '[', '{' or '#').") from None
        raise ConfigError(source, f"is not valid YAML{where}: {problem}.",
                          "fix the YAML syntax (quote values containing ':', '[', '{' or "
                          "'#').") from None
    finally:
        loader.dispose()


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def read_config_file(path: str | Path) -> dict:
    """The mapping of a YAML config file: duplicate keys refused, merge keys (``<<:``) kept,
    unreadable or non-mapping files a ConfigError naming the file. Used by the CLI and
    ``select_pairs(config=...)`` alike (one loader, one set of rules)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError("config", f"file {p} does not exist.", "check the path.")
    if not p.is_file():
        raise ConfigError("config", f"{p} is not a file.", "pass a YAML file with -c.")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"cannot read {p}: {e}.",
                          "check the file's permissions and that it is UTF-8 text.") from None
    loaded = _yaml_load(text, str(p)) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(str(p), "top level must be a mapping.", "write key: value lines.")
    return loaded


def merge_config(base: dict, extra: dict) -> dict:
    """``extra`` merged into ``base`` section by section (``extra`` wins); returns ``base``."""
    return _merge(base, extra)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> RunConfig:
    """Read YAML (optional), apply dotted overrides, type-check and validate."""
    data: dict = dict(base or {})
    if path:
        _merge(data, read_config_file(path))
    _merge(data, parse_overrides(overrides or []))
    return check_source_keys(_build(RunConfig, data).validate())


def config_from_dict(data: dict) -> RunConfig:
    return check_source_keys(_build(RunConfig, data).validate())


# data.* keys only some sources read: given (not the default) with another source, they would be
# silently ignored (issue 17, class 2), so they are an error naming the key and the source
_MQM = ("mqm", "mqm_ted_zhen", "mqm_ted_ende")
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "shape": ("generic",), "columns": ("generic",),
    "aspect_columns": ("generic", "helpsteer3"), "scales": ("generic", "helpsteer3"),
    "preference_path": ("helpsteer2",), "mqm_weights": _MQM, "mqm_references": _MQM,
}
HUB_KEYS = ("hf_split", "revision", "config", "data_dir")
_FILE_SUFFIXES = {".json", ".jsonl", ".csv", ".tsv", ".parquet", ".gz", ".bz2", ".xz", ".txt",
                  ".zip"}


def _is_hub_id(path: str) -> bool:
    """The rule of data/loading.py: not an existing local path and not shaped like one."""
    if not path:
        return False
    p = Path(path).expanduser()
    local_looking = path.startswith((".", "/", "~", "file:")) or "\\" in path or \
        p.suffix.lower() in _FILE_SUFFIXES or p.exists()
    return not local_looking


def plain_path(path: str) -> str:
    """A local path as the user meant it: ``file://`` URLs and ``~`` resolved (they reached the
    readers literally and failed as "file not found", issue 17). Other text is returned as is
    (a hub id stays a hub id)."""
    if not path:
        return path
    if path.startswith("file:"):
        from urllib.parse import unquote, urlparse

        u = urlparse(path)
        if u.netloc not in ("", "localhost"):
            raise ConfigError("data.path", f"{path!r} is a file URL on another host "
                              f"({u.netloc}).", "copy the data here and give its local path.")
        path = unquote(u.path)
    return str(Path(path).expanduser()) if path.startswith("~") else path


def check_source_keys(cfg: RunConfig) -> RunConfig:
    """Every data.* key that is set must be one the chosen source (and path kind) reads.
    Also resolves ``~`` and ``file://`` in data.path / data.preference_path (plain_path)."""
    from .schema import DataConfig

    default = DataConfig()
    d = cfg.data
    d.path, d.preference_path = plain_path(d.path), plain_path(d.preference_path)
    for key, sources in SOURCE_KEYS.items():
        if getattr(d, key) != getattr(default, key) and d.source not in sources:
            raise ConfigError(f"data.{key}", f"is set ({getattr(d, key)!r}) but source "
                              f"{d.source!r} does not read it (only {', '.join(sources)} "
                              "do): it would be silently ignored.",
                              f"remove data.{key}, or set data.source to "
                              f"{' / '.join(sources)} if that is what the data is.")
    if not _is_hub_id(d.path):
        for key in HUB_KEYS:
            if getattr(d, key) != getattr(default, key):
                where = f"the local path {d.path!r}" if d.path else "the bundled copy"
                raise ConfigError(f"data.{key}", f"is set ({getattr(d, key)!r}) but data.path "
                                  f"is {where}, not a Hugging Face dataset id: only hub "
                                  "datasets read it, so it would be silently ignored.",
                                  f"remove data.{key}, or set data.path to a dataset id.")
    return cfg


def describe_fields(cls=RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field: the CLI prints this as documentation."""
    rows = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{prefix}{f.name}", repr(default), f.metadata.get("help", "")))
    return rows
