"""The learner: PPO, its networks, memory, RND, normalisation and checkpoints.

`from PPO import PPO` gives the class, as in the original project.
"""

__version__ = "0.2.0"  # the package version (pyproject.toml reads it from here)

from .ActorCritic import ActorCritic
from .config import PPOConfig
from .Memory import Memory, Rollout
from .PPO import PPO
from .RND import RND

__all__ = ["PPO", "PPOConfig", "ActorCritic", "Memory", "Rollout", "RND", "__version__"]
