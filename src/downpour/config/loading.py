"""Loading a configuration: YAML files, ``base:`` chains, presets, ``--set`` overrides.

A YAML file may start from another with ``base: other.yaml`` (a path
relative to the file) or ``base: demo`` (a preset shipped with the package);
its keys then override the base's, section by section. ``--set
section.key=value`` overrides are read as YAML (``1e-3`` is a number).
Errors name the key and the file.

Examples
--------
>>> cfg = load_config(None, overrides=["train.epochs=3", "loss.beta_kl=1e-3"])
>>> cfg.train.epochs, cfg.loss.beta_kl
(3, 0.001)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from downpour.config.root import Config
from downpour.core.errors import DownpourError
from downpour.core.files import atomic_write_text

__all__ = [
    "PRESET_DIR",
    "apply_overrides",
    "config_to_yaml",
    "load_config",
    "preset_path",
    "save_config",
]


PRESET_DIR = Path(__file__).resolve().parent / "presets"


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` and ``5E+2`` as floats (YAML 1.2 style)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def preset_path(name: str) -> Path:
    """Return the path of a preset shipped with the package (``"demo"`` → ``presets/demo.yaml``)."""
    return PRESET_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, following ``base:`` and resolving relative paths."""
    if not path.is_file():
        hint = f"; presets: {', '.join(p.stem for p in sorted(PRESET_DIR.glob('*.yaml')))}"
        raise DownpourError(f"config file {path} not found{hint if PRESET_DIR.is_dir() else ''}")
    if path.resolve() in chain:
        raise DownpourError(f"config {path}: 'base' chain loops back to itself")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        raise DownpourError(f"config {path} is not valid YAML: {_yaml_problem(exc)}") from None
    raw = raw or {}
    if not isinstance(raw, dict):
        raise DownpourError(
            f"config {path} must be a mapping of sections, got {type(raw).__name__}"
        )
    _resolve_paths(raw, path.parent)
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    if not base_path.is_file() and not Path(base).suffix and preset_path(str(base)).is_file():
        base_path = preset_path(str(base))  # ``base: demo`` names a preset
    merged = _read_yaml(base_path, (*chain, path.resolve()))
    _deep_update(merged, raw)
    return merged


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Return a YAML error on one line: the problem and where it is (line, column)."""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _resolve_paths(node: Any, root: Path) -> None:
    """Make every relative ``path:`` value absolute against ``root`` (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "path" and isinstance(value, str) and not Path(value).is_absolute():
                node[key] = str((root / value).resolve())
            else:
                _resolve_paths(value, root)
    elif isinstance(node, list):
        for item in node:
            _resolve_paths(item, root)


# Mappings that a derived file replaces whole instead of merging key by key
# (a split given as a date range must not inherit the base's 'years').
_REPLACE_WHOLE = {("data", "splits", s) for s in ("train", "val", "test")}


def _deep_update(base: dict[str, Any], new: dict[str, Any], where: tuple[str, ...] = ()) -> None:
    for key, value in new.items():
        path = (*where, str(key))
        if (
            isinstance(value, dict)
            and isinstance(base.get(key), dict)
            and path not in _REPLACE_WHOLE
        ):
            _deep_update(base[key], value, path)
        else:
            base[key] = value


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise DownpourError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=5")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise DownpourError(f"--set {item!r}: empty part in key {key!r}")
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.YAMLError:
        value = text
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise DownpourError(f"--set {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """Return the pydantic model inside an annotation (``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _valid_keys(loc: Sequence[Any]) -> list[str]:
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part)) if model else None
        model = _model_in(field.annotation) if field else None
        if model is None:
            return []
    return list(model.model_fields)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            section = ".".join(str(p) for p in loc[:-1]) or "the top level"
            lines.append(
                f"unknown config key '{key}' in {source}{hint} "
                f"(valid keys in {section}: {', '.join(valid)})"
            )
        else:
            got = err.get("input")
            got_txt = f" (got {got!r})" if not isinstance(got, dict) else ""
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"config key '{key}' in {source}: {msg}{got_txt}")
    return "; ".join(lines)  # one line: the CLI prints one error line


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Load, merge and validate a configuration.

    Parameters
    ----------
    path
        A YAML file, or the name of a preset shipped with the package (``"demo"``);
        ``None`` gives the defaults (the embedded dataset).
    overrides
        ``section.key=value`` strings applied after the file; values are read
        as YAML (``1e-3`` is a number, ``[2, 3]`` a list).

    Returns
    -------
    Config
        The validated configuration.

    Raises
    ------
    DownpourError
        For a missing file, invalid YAML, an unknown key or a wrong type; the
        message names the key and the file.
    """
    raw: dict[str, Any] = {}
    source = "the defaults"
    if path is not None:
        p = Path(path)
        if not p.exists() and not p.suffix and preset_path(str(path)).is_file():
            p = preset_path(str(path))
        raw = _read_yaml(p)
        source = str(p)
    for item in overrides:
        _apply_override(raw, item)
    if overrides:
        source = f"{source} (with --set {' '.join(overrides)})"
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise DownpourError(_format_errors(exc, source)) from None


def apply_overrides(cfg: Config, overrides: Sequence[str], source: str = "the config") -> Config:
    """Return a copy of ``cfg`` with ``section.key=value`` overrides applied and validated.

    Used where the base config is not a file, e.g. the config stored in a checkpoint.
    """
    if not overrides:
        return cfg
    raw = cfg.model_dump(mode="json")
    for item in overrides:
        _apply_override(raw, item)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise DownpourError(
            _format_errors(exc, f"{source} (with --set {' '.join(overrides)})")
        ) from None


def config_to_yaml(cfg: Config) -> str:
    """Return the resolved config as YAML text (every key, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config to ``path`` atomically and return the path."""
    return atomic_write_text(path, config_to_yaml(cfg))
