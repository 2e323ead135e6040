"""Saving and loading tensors safely: atomic writes that refuse non-finite values, weights-only
loads, clear shape errors."""

from __future__ import annotations

import io
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .checks import NonFiniteError


def non_finite_entries(state: Any, prefix: str = "") -> Iterator[str]:
    """The names (dotted paths) of the floating-point tensors in `state`, a nest of dicts and
    lists, that hold a NaN or an infinity."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() and not bool(torch.isfinite(state).all()):
            yield prefix or "tensor"
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from non_finite_entries(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from non_finite_entries(value, f"{prefix}[{index}]")


def temporary_path(file: Path) -> Path:
    """A new hidden name beside `file` to write to before renaming over it. The name carries
    this process's id and host, so `remove_stale_temporaries` can tell abandoned ones."""
    return file.with_name(f".{file.name}.{os.getpid()}@{socket.gethostname()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temporaries(file: Path) -> None:
    """Deletes the temporaries of `file` left by processes of this host that no longer run
    (a save killed mid-write); those of running processes and of other hosts are kept."""
    host = socket.gethostname()
    for temporary in file.parent.glob(f".{file.name}.*.tmp"):
        owner = temporary.name[len(file.name) + 2 : -len(".tmp")].rsplit(".", 1)[0]
        pid, _, owner_host = owner.partition("@")
        if owner_host == host and pid.isdigit() and not _process_exists(int(pid)):
            temporary.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def atomic_save(state: dict[str, Any], file: Path) -> None:
    """Writes `state` to a temporary file beside `file`, then renames it over `file`, so a crash
    mid-write leaves the previous file intact.

    Raises NonFiniteError, writing nothing, if a tensor in `state` holds NaN or inf (a learner
    that has diverged is never saved over good files), and OSError with the errno of the
    failure (ENOSPC for a full disk) and the path if the file cannot be written."""
    bad = list(non_finite_entries(state))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(
            f"not saving {file}: NaN or inf in {shown}; the file on disk, if any, is unchanged"
        )
    serialised = io.BytesIO()
    torch.save(state, serialised)  # in memory first: a write error then comes from Python, named
    atomic_write(file, lambda handle: handle.write(serialised.getbuffer()))


def atomic_write(file: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Calls `write(handle)` on a new temporary file beside `file`, syncs it, then renames it
    over `file`: a crash mid-write leaves the previous file intact. Stale temporaries of `file`
    are removed first. A failed write raises OSError with its errno (ENOSPC for a full disk)
    and the path; the temporary is removed."""
    temporary = temporary_path(file)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(file)
        with open(temporary, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, file)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OSError(
            error.errno,
            f"could not write {file} ({error.strerror or error}); the previous file, if any, is unchanged",
            str(file),
        ) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
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


def check_compatible(expected: dict[str, torch.Tensor], loaded: dict[str, torch.Tensor], file: Path) -> None:
    """Raises ValueError listing every missing, unexpected or differently shaped entry."""
    problems = [f"missing {key}" for key in expected if key not in loaded]
    problems += [f"unexpected {key}" for key in loaded if key not in expected]
    problems += [
        f"{key}: expected shape {tuple(value.shape)}, file has {tuple(loaded[key].shape)}"
        for key, value in expected.items()
        if key in loaded and loaded[key].shape != value.shape
    ]
    if problems:
        raise ValueError(f"{file} does not match this model: " + "; ".join(problems))
