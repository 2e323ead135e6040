"""A trained policy for deployment: one file that needs no code of this project to run.

    ppo.export("cartpole.pt2")                           # torch.export (default)
    policy = torch.export.load("cartpole.pt2").module()
    actions = policy(torch.as_tensor(observations))      # a batch [B, *observation_shape]

    ppo.export("cartpole.ts", format="torchscript")      # torch.jit.load("cartpole.ts")
    ppo.export("cartpole.onnx", format="onnx")           # onnxruntime.InferenceSession("cartpole.onnx")
                                                         # input "obs", output "actions"

Every format holds the same `DeployedPolicy` with a free batch size: raw observations in, the
most likely actions out, as `PPO.get_action(..., deterministic=True)` gives them (the observation
normaliser applied, continuous actions in the env's units clipped to its bounds). ONNX needs the
optional extra `pip install -e .[onnx]` (onnx, onnxscript; onnxruntime to run the file).
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import torch
from torch import nn

from .ActorCritic import ActorCritic
from .checkpoint import atomic_write

EXPORT_FORMATS = ("export", "torchscript", "onnx")


ONE_HOT_SPACES = ("Discrete", "MultiDiscrete", "MultiBinary")  # flattened inside the export


class OneHot(nn.Module):
    """Raw observations of a Discrete [B], MultiDiscrete [B, ...] or MultiBinary [B, ...] space
    (as recorded in PPO's `observation_space`) -> the flat float vectors the policy was trained
    on, laid out as gymnasium's `flatten` lays them out (one-hot per discrete value)."""

    def __init__(self, space: dict):
        super().__init__()
        self.kind = space["type"]
        sizes = torch.tensor(space.get("nvec", space.get("n", 2)))  # MultiBinary: no one-hot
        self.shape = list(space["shape"]) if self.kind == "MultiBinary" else list(sizes.shape)
        self.sizes = [int(n) for n in sizes.reshape(-1)]
        self.lowest = torch.tensor(space.get("start", 0)).expand(self.shape).reshape(-1).tolist()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        values = obs.reshape(obs.shape[0], -1)
        if self.kind == "MultiBinary":
            return values.float()
        values = values.long()
        return torch.cat(
            [
                (values[:, i : i + 1] - low == torch.arange(size)).float()
                for i, (size, low) in enumerate(zip(self.sizes, self.lowest, strict=True))
            ],
            dim=1,
        )

    def example(self, batch: int) -> torch.Tensor:
        """A batch of valid raw observations (every value at its lowest), of the dtype that
        gymnasium's spaces give (int8 for MultiBinary, int64 otherwise)."""
        dtype = torch.int8 if self.kind == "MultiBinary" else torch.int64
        return torch.tensor(self.lowest, dtype=dtype).reshape(self.shape).expand(batch, *self.shape).clone()


class DeployedPolicy(nn.Module):
    """Raw observations [B, ...] -> the most likely actions [B] (discrete) or [B, action_dim],
    continuous ones clipped to the policy's action bounds when `clip_actions`. Observations of
    a recorded Discrete, MultiDiscrete or MultiBinary `observation_space` are taken raw and
    one-hot encoded inside; those of a Dict or Tuple space are taken flattened
    (`gymnasium.spaces.flatten(space, obs)`), as FlattenParts gives them."""

    def __init__(self, policy: ActorCritic, clip_actions: bool, observation_space: dict | None = None):
        super().__init__()
        self.policy = copy.deepcopy(policy).cpu().requires_grad_(False)
        self.clip_actions = clip_actions and policy.is_continuous
        one_hot = observation_space is not None and observation_space["type"] in ONE_HOT_SPACES
        self.flatten = OneHot(cast(dict, observation_space)) if one_hot else nn.Identity()
        self.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        actions = self.policy.act(self.flatten(obs), None, deterministic=True)
        if self.clip_actions:
            actions = torch.maximum(torch.minimum(actions, self.policy.action_high), self.policy.action_low)
        return actions


def export_policy(
    policy: ActorCritic,
    file: str | Path,
    format: str = "export",
    clip_actions: bool = True,
    observation_space: dict | None = None,
) -> Path:
    """Writes `policy`'s deterministic actor to `file` in `format` (one of EXPORT_FORMATS),
    atomically; `clip_actions`: continuous actions clipped to the policy's bounds;
    `observation_space`: the recorded space the observations were flattened from (PPO's)."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    file = Path(file)
    deployed = DeployedPolicy(policy, clip_actions, observation_space)
    if isinstance(deployed.flatten, OneHot):
        example = deployed.flatten.example(2)
    else:
        example = torch.zeros(
            (2, *policy.observation_shape), dtype=torch.uint8 if policy.is_image else torch.float32
        )
    writers = {"export": _torch_export_writer, "torchscript": _torchscript_writer, "onnx": _onnx_writer}
    atomic_write(file, writers[format](deployed, example))
    return file


def _free_batch() -> dict:
    return {"obs": {0: torch.export.Dim("batch", min=1)}}


def _torch_export_writer(deployed: DeployedPolicy, example: torch.Tensor) -> Callable[[BinaryIO], None]:
    program = torch.export.export(deployed, (example,), dynamic_shapes=_free_batch())
    return lambda handle: torch.export.save(program, handle)


def _torchscript_writer(deployed: DeployedPolicy, example: torch.Tensor) -> Callable[[BinaryIO], None]:
    traced = torch.jit.trace(deployed, example)
    return lambda handle: torch.jit.save(traced, handle)


def _onnx_writer(deployed: DeployedPolicy, example: torch.Tensor) -> Callable[[BinaryIO], None]:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"format='onnx' needs {' and '.join(missing)}: pip install -e .[onnx]")
    program = torch.onnx.export(
        deployed,
        (example,),
        dynamo=True,
        dynamic_shapes=_free_batch(),
        input_names=["obs"],
        output_names=["actions"],
        verbose=False,
    )
    onnx_program = cast("torch.onnx.ONNXProgram", program)  # dynamo=True: always a program

    def write(handle: BinaryIO) -> None:
        handle.write(onnx_program.model_proto.SerializeToString())

    return write
