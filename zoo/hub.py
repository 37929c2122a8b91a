"""Loading generator weights: zoo training checkpoints, plain state dicts and official released formats.

``load_generator_weights`` recognises, in order: a zoo training checkpoint (EMA generator preferred), a
plain state dict of our generator, and whatever the preset's ``convert_checkpoint`` understands (the
official formats of that family). Anything else fails with one line naming the offending keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from zoo.errors import CheckpointError
from zoo.registry import get_preset


def read_file(path):
    """``torch.load`` (tensors only, no code) of ``path``, or None when it is not a torch file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def check_state_dict(model: nn.Module, state: dict, source: str) -> None:
    """Raise unless ``state`` has exactly the model's keys with the model's shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    if wrong:
        k = wrong[0]
        problems.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                        + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


def is_zoo_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and str(obj.get("format", "")).startswith("inpaint-zoo-checkpoint")


def saved_model_kwargs(obj) -> dict:
    """The generator arguments a zoo training checkpoint was built with (widths, sizes), else {}."""
    if is_zoo_checkpoint(obj):
        return dict((obj.get("config") or {}).get("model_kwargs") or {})
    return {}


def generator_state(obj, path, model: nn.Module, name: str, ema: bool = True) -> dict:
    """A state dict for ``model`` (preset ``name``) from ``obj``, the ``read_file`` of ``path``."""
    if is_zoo_checkpoint(obj):
        if obj.get("model") not in (None, name):
            raise CheckpointError(f"{path} holds a {obj.get('model')} model, not {name}")
        return obj["G_ema"] if ema and obj.get("G_ema") is not None else obj["G"]
    if isinstance(obj, dict) and set(obj) == set(model.state_dict()):
        return obj
    convert = get_preset(name).convert_checkpoint
    if convert is not None:  # official formats of the family: it reads the file itself if it must
        return convert(obj, path, model)
    if obj is None:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file")
    if isinstance(obj, dict) and all(torch.is_tensor(v) for v in obj.values()):
        return obj  # a plain state dict: check_state_dict names what does not fit
    raise CheckpointError(f"{path} is not a checkpoint format that {name} understands")


def load_generator_weights(model: nn.Module, path, name: str, ema: bool = True, obj=None) -> nn.Module:
    """Load ``path`` (already read as ``obj``, if given) into ``model``, strictly."""
    state = generator_state(read_file(path) if obj is None else obj, path, model, name, ema=ema)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state)
    return model
