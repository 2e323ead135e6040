"""Saving and loading tensors safely: atomic writes, weights-only loads, clear shape errors."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_save(state: dict[str, Any], file: Path) -> None:
    """Writes `state` to a temporary file beside `file`, then renames it over `file`, so a crash
    mid-write leaves the previous file intact."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_name, file)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_state(file: Path, device: torch.device, what: str = "checkpoint") -> dict[str, Any]:
    """Loads a dict of tensors and plain values (numbers, strings, lists, dicts) without
    executing code from the file; `what` names the file in errors."""
    if not file.is_file():
        raise FileNotFoundError(f"{what} not found: {file}")
    try:
        state = torch.load(file, map_location=device, weights_only=True)
    except Exception as error:
        raise ValueError(f"{file} is not a readable {what}: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"{file} does not hold a {what} dict")
    return state


def load_tensors(file: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """Loads a dict of tensors without executing code from the file."""
    state = load_state(file, device, what="weights file")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file} does not hold a dict of tensors")
    return state


def check_compatible(expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor],
                     file: Path) -> None:
    """Raises ValueError listing every missing, unexpected or differently shaped entry."""
    problems = [f"missing {key}" for key in expected if key not in loaded]
    problems += [f"unexpected {key}" for key in loaded if key not in expected]
    problems += [f"{key}: expected shape {tuple(value.shape)}, file has {tuple(loaded[key].shape)}"
                 for key, value in expected.items()
                 if key in loaded and loaded[key].shape != value.shape]
    if problems:
        raise ValueError(f"{file} does not match this model: " + "; ".join(problems))
