"""Where the learner runs: its device (`place`), and torch's intra-op thread count on a CPU."""

from __future__ import annotations

import os

import torch

from .checks import check_positive_int


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def place(
    device: str | torch.device | None, num_threads: int | None, has_images: bool
) -> tuple[torch.device, int]:
    """A learner's device (`default_device()` if None) and torch's thread count: on a CPU,
    chosen by `choose_torch_threads`; elsewhere, as it is."""
    placed = torch.device(device) if device is not None else default_device()
    if placed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for, but torch sees no CUDA device here")
    if num_threads is not None:
        num_threads = check_positive_int("num_threads", num_threads)
    return placed, (
        choose_torch_threads(num_threads, has_images) if placed.type == "cpu" else torch.get_num_threads()
    )


# torch's thread count when this module was imported, and the last count a PPO chose: any other
# count found later was set by the user (torch.set_num_threads), whose choice stands.
_THREADS_AT_IMPORT = torch.get_num_threads()
_threads_chosen: int | None = None
CNN_THREADS = 4  # at most, for image policies: convolutions gain from threads on many cores


def choose_torch_threads(requested: int | None, is_image: bool) -> int:
    """Sets torch's intra-op thread count for a CPU learner and returns it.

    `requested` wins. Otherwise the user's own choice stands (OMP_NUM_THREADS, or
    torch.set_num_threads called after importing PPO); failing that: 1 thread for vector
    policies, whose small matrix products only lose time to threads (4x slower beside another
    busy process), and a quarter of the cores, 1 to CNN_THREADS, for image policies (on 2 cores
    one thread updated the Nature CNN faster than two; benchmarks/threads_under_load.py --cnn)."""
    global _threads_chosen
    current = torch.get_num_threads()
    if requested is None:
        user_chose = "OMP_NUM_THREADS" in os.environ or current not in (_THREADS_AT_IMPORT, _threads_chosen)
        if user_chose:
            return current
        requested = max(1, min(CNN_THREADS, (os.cpu_count() or 1) // 4)) if is_image else 1
    if requested != current:
        torch.set_num_threads(requested)
    _threads_chosen = requested
    return requested
