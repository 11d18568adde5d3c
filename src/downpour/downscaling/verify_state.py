"""Verification states on disk: one accumulator per ``.npz`` file, and folders of them.

A state file holds everything a
:class:`~downpour.metrics.accumulator.VerificationAccumulator` knows (the
arrays of :meth:`~downpour.metrics.accumulator.VerificationAccumulator.state`,
written with ``numpy.savez_compressed`` and read with ``allow_pickle=False``),
so that the pieces of a long archive can be verified in separate jobs, saved,
and merged later; a round trip is exact.

A state folder (``downpour verify --period … --save-state DIR``) holds one
state file per model (``DIR/<model>.npz``), for a run with a quantile SRDRN
the probabilistic accumulators too (``DIR/quantile.<model>.npz`` of a
:class:`~downpour.metrics.quantiles.QuantileAccumulator`,
``DIR/probability.<model>.npz`` of each deterministic model as a 0/1
forecast, :class:`~downpour.metrics.probability.ProbabilityAccumulator`), for a run with a
cVAE the generator's (``DIR/generator.ensemble.npz`` of an
:class:`~downpour.metrics.ensemble_verification.EnsembleAccumulator`,
``DIR/generator.members.npz`` of its members pooled), and a manifest
(``DIR/manifest.json``) naming the run, store and checkpoints with their
SHA-256. :func:`merge_pieces` reads several such folders, refuses pieces of
another run, store or checkpoint and days present twice, and merges each
model's accumulators (``downpour.downscaling.verify.merge_states`` scores them).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from downpour.core.errors import DownpourError
from downpour.core.files import atomic_dir, atomic_file
from downpour.metrics.accumulator import STATE_VERSION, VerificationAccumulator
from downpour.metrics.ensemble_verification import EnsembleAccumulator
from downpour.metrics.probability import ProbabilityAccumulator
from downpour.metrics.quantiles import QuantileAccumulator

__all__ = [
    "MANIFEST",
    "STATE_VERSION",
    "check_state_dir",
    "file_sha256",
    "load_state",
    "merge_generator_pieces",
    "merge_pieces",
    "merge_probabilistic_pieces",
    "read_manifest",
    "save_state",
    "save_states",
]

#: Manifest of a folder of saved accumulators (``verify --save-state``).
MANIFEST = "manifest.json"
_MANIFEST_KIND = "downpour verification state"

#: Manifest keys that say what was verified; pieces differing in one of them never merge.
_SOURCE_KEYS = ("run", "store", "checkpoints", "checkpoint_sha256")


# ------------------------------------------------------------------ state files


def save_state(
    acc: (
        VerificationAccumulator | QuantileAccumulator | ProbabilityAccumulator | EnsembleAccumulator
    ),
    path: str | Path,
) -> Path:
    """Write an accumulator to an ``.npz`` file through a temporary file and a rename.

    Parameters
    ----------
    acc
        The accumulator.
    path
        Output file, e.g. ``state/bicubic.npz``; parent folders are created.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    arrays = acc.state()
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


#: The accumulator classes a state file may hold, by kind.
STATE_KINDS: dict[str, Any] = {
    "verification": VerificationAccumulator,
    "quantile": QuantileAccumulator,
    "probability": ProbabilityAccumulator,
    "ensemble": EnsembleAccumulator,
}

#: The generator's accumulators in a state folder: role → (file, kind in :data:`STATE_KINDS`).
GENERATOR_FILES = {
    "ensemble": ("generator.ensemble.npz", "ensemble"),
    "members": ("generator.members.npz", "verification"),
}


def load_state(path: str | Path, kind: str = "verification") -> Any:
    """Read an accumulator written by :func:`save_state` (``kind`` in :data:`STATE_KINDS`).

    Raises
    ------
    DownpourError
        When the file is missing, is not such a state, or was written by
        another layout version.
    """
    path = Path(path)
    if not path.is_file():
        raise DownpourError(f"{path}: no such verification state (write one with save_state())")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DownpourError(f"{path}: not a verification state .npz ({e})") from e
    return STATE_KINDS[kind].from_state(arrays, where=str(path))


# ---------------------------------------------------------------- state folders


def _file_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model) + ".npz"


def save_states(
    accs: Mapping[str, VerificationAccumulator],
    directory: str | Path,
    meta: Mapping[str, Any],
    *,
    probabilistic: Mapping[str, Mapping[str, Any]] | None = None,
    generator: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Save one accumulator per model and a ``manifest.json`` into ``directory``.

    The folder is written whole (:func:`~downpour.core.files.atomic_dir`): a
    failure midway leaves a previous folder of the same name as it was, never
    a mix of old and new files.

    Parameters
    ----------
    accs
        ``{model: accumulator}`` of the same days.
    directory
        Output folder; a previous state folder there is replaced as a whole.
    meta
        JSON-ready facts for the manifest (run, store, split, units, thresholds, ...).
    probabilistic
        ``{"quantile": {model: QuantileAccumulator}, "probability": {model:
        ProbabilityAccumulator}}`` of a run with a quantile SRDRN, or None.
    generator
        ``{"ensemble": EnsembleAccumulator, "members": VerificationAccumulator}``
        of the generator (:mod:`downpour.downscaling.verify_generator`), or None;
        its facts belong in ``meta["generator"]``.

    Returns
    -------
    dict
        The manifest: ``meta`` plus ``models`` (``{model: file}``), ``days``
        (first and last day), ``n_days``, ``scales`` and ``kind``/``version``;
        with ``probabilistic``, ``probabilistic_models`` (``{kind: {model: file}}``);
        with ``generator``, ``generator_models`` (``{role: file}``).

    Raises
    ------
    DownpourError
        When ``directory`` exists but is not an empty folder or a state folder
        (replacing it would delete other files), or model names collide as file names.
    """
    directory = check_state_dir(directory)
    files = {name: _file_name(name) for name in accs}
    if len(set(files.values())) != len(files):
        raise DownpourError(f"model names {list(files)} collide as file names; rename a model")
    first = next(iter(accs.values()))
    times = first.times.astype("datetime64[D]")
    manifest = {
        "kind": _MANIFEST_KIND,
        "version": 1,
        **meta,
        "scales": list(first.scales),
        "n_days": first.n_days,
        "days": [str(times.min()), str(times.max())] if times.size else [],
        "models": files,
    }
    extra = {
        kind: {name: f"{kind}.{_file_name(name)}" for name in group}
        for kind, group in (probabilistic or {}).items()
    }
    if extra:
        manifest["probabilistic_models"] = extra
    if generator:
        manifest["generator_models"] = {role: GENERATOR_FILES[role][0] for role in generator}
    with atomic_dir(directory) as tmp:
        for name, acc in accs.items():
            save_state(acc, tmp / files[name])
        for kind, group in (probabilistic or {}).items():
            for name, acc in group.items():
                save_state(acc, tmp / extra[kind][name])
        for role, acc in (generator or {}).items():
            save_state(acc, tmp / GENERATOR_FILES[role][0])
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check_state_dir(directory: str | Path) -> Path:
    """Return ``directory`` if it is new, empty or a state folder (replaced whole when saved)."""
    directory = Path(directory)
    if directory.exists() and not (
        (directory / MANIFEST).is_file() or (directory.is_dir() and not any(directory.iterdir()))
    ):
        raise DownpourError(
            f"--save-state {directory}: exists and is not a verification state folder; "
            "it would be replaced as a whole: give a new or empty folder"
        )
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read the manifest of a state folder; an error when it has none."""
    path = directory / MANIFEST
    if not path.is_file():
        raise DownpourError(
            f"{directory}: no {MANIFEST}; write verification states with "
            "`downpour verify RUN --period START:END --save-state DIR`"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("kind") != _MANIFEST_KIND:
        raise DownpourError(f"{path}: not a verification state manifest")
    return manifest


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 of a file's contents (hex), read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_same_source(
    ref_dir: Path, ref: Mapping[str, Any], d: Path, m: Mapping[str, Any]
) -> None:
    """Refuse two pieces verified against another run, store or checkpoint (file contents)."""
    for key in _SOURCE_KEYS:
        a, b = ref.get(key), m.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b):
            name = next(k for k in a if a[k] != b[k])
            what = f"{key}[{name!r}]: {b[name]!r} in {d} but {a[name]!r} in {ref_dir}"
        else:
            what = f"{key}: {b!r} in {d} but {a!r} in {ref_dir}"
        hint = ""
        if key == "checkpoint_sha256":
            hint = " (the checkpoint was retrained or replaced between the pieces)"
        raise DownpourError(
            f"verify-merge: the pieces {ref_dir} and {d} differ in {what}{hint}; "
            "verify all pieces against the same run, store and checkpoints "
            "(re-run `downpour verify --period … --save-state` for the stale pieces)"
        )


def merge_pieces(
    directories: Sequence[str | Path],
) -> tuple[dict[str, Any], dict[str, VerificationAccumulator]]:
    """Read the state folders of several pieces and merge each model's accumulators.

    Parameters
    ----------
    directories
        Folders written by :func:`save_states` (any order).

    Returns
    -------
    (dict, dict)
        The first folder's manifest and ``{model: merged accumulator}``.

    Raises
    ------
    DownpourError
        When a folder has no manifest, the pieces disagree on run, store,
        checkpoints (paths or contents), split, units, thresholds, scales or
        models, or a day is in two pieces.
    """
    if not directories:
        raise DownpourError("verify-merge: give at least one state folder")
    dirs = [Path(d) for d in directories]
    manifests = [read_manifest(d) for d in dirs]
    ref = manifests[0]
    for d, m in zip(dirs[1:], manifests[1:], strict=True):
        _check_same_source(dirs[0], ref, d, m)
        for key in ("split", "units", "thresholds", "scales"):
            if m.get(key) != ref.get(key):
                raise DownpourError(
                    f"{d}: {key} {m.get(key)!r} differs from {ref.get(key)!r} in {dirs[0]}; "
                    "merge pieces of the same verification only"
                )
        if set(m["models"]) != set(ref["models"]) or any(
            m.get(k) != ref.get(k) for k in ("probabilistic_models", "generator_models")
        ):
            raise DownpourError(
                f"{d} holds models {sorted(m['models'])}{_generator_note(m)} but {dirs[0]} holds "
                f"{sorted(ref['models'])}{_generator_note(ref)}; verify the same models in every "
                "piece"
            )
        if m.get("generator") != ref.get("generator"):
            a, b = ref.get("generator") or {}, m.get("generator") or {}
            key = next(k for k in sorted({*a, *b}) if a.get(k) != b.get(k))
            raise DownpourError(
                f"{d}: the generator's {key} {b.get(key)!r} differs from {a.get(key)!r} in "
                f"{dirs[0]}; verify every piece with the same generator settings (--members)"
            )
    accs = _merge_files(dirs, [m["models"] for m in manifests], "verification")
    return ref, accs


def _generator_note(manifest: Mapping[str, Any]) -> str:
    return " and the generator" if manifest.get("generator_models") else ""


def _merge_files(dirs: list[Path], files: list[Mapping[str, str]], kind: str) -> dict[str, Any]:
    """Load and merge each model's state files of one kind across the pieces."""
    accs: dict[str, Any] = {}
    for name in files[0]:
        for d, f in zip(dirs, files, strict=True):
            acc = load_state(d / f[name], kind)
            try:
                accs[name] = accs[name].merge(acc) if name in accs else acc
            except DownpourError as e:
                raise DownpourError(f"{d}: cannot merge {name!r} into the other pieces: {e}") from e
    return accs


def merge_probabilistic_pieces(directories: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Merge the probabilistic accumulators of pieces checked by :func:`merge_pieces`.

    Returns
    -------
    dict
        ``{"quantile": {model: QuantileAccumulator}, "probability": {model:
        ProbabilityAccumulator}}``, empty when the pieces hold none.
    """
    dirs = [Path(d) for d in directories]
    manifests = [read_manifest(d) for d in dirs]
    kinds = manifests[0].get("probabilistic_models", {})
    return {
        kind: _merge_files(dirs, [m["probabilistic_models"][kind] for m in manifests], kind)
        for kind in kinds
    }


def merge_generator_pieces(directories: Sequence[str | Path]) -> dict[str, Any]:
    """Merge the generator's accumulators of pieces checked by :func:`merge_pieces`.

    Returns
    -------
    dict
        ``{"ensemble": EnsembleAccumulator, "members": VerificationAccumulator}``,
        empty when the pieces hold no generator.
    """
    dirs = [Path(d) for d in directories]
    roles = read_manifest(dirs[0]).get("generator_models", {})
    return {
        role: _merge_files(dirs, [{role: file}] * len(dirs), GENERATOR_FILES[role][1])[role]
        for role, file in roles.items()
    }
