"""Collection: vectorised envs, per-env memory, the one-liner runner and the original helpers."""
from . import utils
from .AsyncPPO import AsyncPPO
from .vec_memory import VecMemory
from .vectorizer import EnvStepError, EnvVectorizer

__all__ = ["AsyncPPO", "EnvVectorizer", "VecMemory", "EnvStepError", "utils"]
