"""Where the learner runs: its default device, and torch's intra-op thread count on a CPU."""
from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
        user_chose = "OMP_NUM_THREADS" in os.environ or current not in (_THREADS_AT_IMPORT,
                                                                         _threads_chosen)
        if user_chose:
            return current
        requested = max(1, min(CNN_THREADS, (os.cpu_count() or 1) // 4)) if is_image else 1
    if requested != current:
        torch.set_num_threads(requested)
    _threads_chosen = requested
    return requested
