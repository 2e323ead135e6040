"""Argument checks shared by the learner and the collectors: each error names the parameter,
what was expected and what came."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_finite_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_unit_interval(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_non_negative_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


# torch.compile's modes; those in CUDA_GRAPH_MODES replay CUDA graphs on a GPU.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_compile_mode(mode: object, compiling: bool) -> str:
    """`compile_mode`, one of COMPILE_MODES; a mode other than "default" needs `compile_update`."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode != "default" and not compiling:
        raise ValueError(
            f"compile_mode={mode!r} needs compile_update=True (the update is compiled only then)"
        )
    return str(mode)


def check_shape(name: str, value: object) -> tuple[int, ...]:
    """A non-empty sequence of positive integers (a shape, layer sizes, MultiDiscrete sizes)."""
    try:
        items: tuple[Any, ...] = tuple(value)  # type: ignore[arg-type]  # any iterable; else TypeError
    except TypeError:
        items = ()
    if not items or not all(
        isinstance(v, Integral) and not isinstance(v, bool) and int(v) > 0 for v in items
    ):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {value!r}")
    return tuple(int(v) for v in items)


class NonFiniteError(FloatingPointError):
    """NaN or inf where only finite numbers make sense: a reward, a loss, the learner's weights,
    or a state about to be saved."""
