"""Collection: vectorised envs, per-env memory, the one-liner runner and the original helpers.

The runner is `from AsyncTools.AsyncPPO import AsyncPPO`, as in the original project; this
package's namespace keeps `AsyncTools.AsyncPPO` the module (with `ppo_for_env` and the rest).
"""

from PPO import __version__

from . import utils
from .vec_memory import VecMemory
from .vectorizer import EnvStepError, EnvVectorizer

__all__ = ["EnvVectorizer", "VecMemory", "EnvStepError", "utils", "__version__"]
