"""The models a server runs: fixed when it starts, from ``--model`` specs; clients only pick among their names.

A spec is ``PRESET[=SOURCE][,checkpoint=SOURCE][,label=NAME][,width=W][,tiny][,KEY=VALUE ...]``:

    deepfill_v2                          random weights (the page shows a warning)
    mat=mat.places512                    preset mat, weights from SOURCE (anything ``zoo.load`` resolves)
    mhtma,checkpoint=runs/x,label=ours   a run directory stands for its newest checkpoint
    deepfill_v2,tiny                     the preset's tiny widths (tests, CPU demos); width=W sets the base width

Every file is opened here, once, by the operator's command; a request names a loaded model or nothing.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from zoo.errors import ZooError

USAGE = "PRESET[=SOURCE][,checkpoint=SOURCE][,label=NAME][,width=W][,tiny][,KEY=VALUE]"


@dataclass
class ModelSpec:
    preset: str
    checkpoint: str | None = None
    label: str | None = None
    width: int | None = None
    tiny: bool = False
    overrides: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.label or self.preset


@dataclass
class ServedModel:
    name: str
    spec: ModelSpec
    model: nn.Module
    takes_seed: bool  # stochastic generators (MAT's latent): a seed picks the completion
    takes_sketch: bool  # sketch-guided generators (mhtma_sketch)

    @property
    def random_weights(self) -> bool:
        return self.spec.checkpoint is None

    @property
    def weights(self) -> str:
        return "random (untrained)" if self.random_weights else self.spec.checkpoint

    def info(self) -> dict:
        from zoo.registry import get_preset

        preset = get_preset(self.spec.preset)
        return dict(
            name=self.name,
            preset=self.spec.preset,
            weights=self.weights,
            random_weights=self.random_weights,
            license=_license(preset, self.spec.checkpoint),
            known_weights=[f"{tag}: {text}" for tag, text in preset.checkpoints.items()],
            native_size=preset.native_size,
            size_multiple=int(getattr(self.model, "zoo_size_multiple", preset.size_multiple)),
            parameters=sum(p.numel() for p in self.model.parameters()),
            takes_seed=self.takes_seed,
            takes_sketch=self.takes_sketch,
            paper=preset.paper,
        )


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_model_spec(text: str) -> ModelSpec:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ZooError(f"empty --model; expected {USAGE}")
    preset, _, source = parts[0].partition("=")
    if not preset:
        raise ZooError(f"--model {text!r} must start with a preset name: {USAGE}")
    spec = ModelSpec(preset, checkpoint=source or None)
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if key == "tiny" and not sep:
            spec.tiny = True
        elif not sep or not key or not value:
            raise ZooError(f"--model {text!r}: {part!r} is not KEY=VALUE ({USAGE})")
        elif key == "checkpoint":
            spec.checkpoint = value
        elif key == "label":
            spec.label = value
        elif key == "width":
            if not value.isdigit() or int(value) < 1:
                raise ZooError(f"--model {text!r}: width must be a positive integer, got {value!r}")
            spec.width = int(value)
        else:
            spec.overrides[key] = _literal(value)
    return spec


def _license(preset, checkpoint) -> str:
    """The licence of the weights: the hub's weight entry says it when there is one."""
    if checkpoint is None:
        return "n/a (random weights)"
    table = getattr(preset, "weights", None) or {}
    tag = str(checkpoint).split(".", 1)[-1]
    entry = table.get(tag) if isinstance(table, dict) else None
    value = getattr(entry, "license", None) or (entry.get("license") if isinstance(entry, dict) else None)
    return str(value) if value else "unknown: see the terms of the weights' source"


def _checkpoint_source(source: str) -> str:
    """A zoo run directory stands for its newest checkpoint; anything else goes to ``zoo.load`` as given."""
    path = Path(source)
    if path.is_dir() and (path / "checkpoints").is_dir():
        from trainers.checkpoint import list_checkpoints

        found = list_checkpoints(path)
        if not found:
            raise ZooError(f"no checkpoints in {path / 'checkpoints'}")
        return str(found[-1])
    return source


def load_served_model(spec: ModelSpec, device="cpu") -> ServedModel:
    from zoo.api import load
    from zoo.registry import get_preset

    preset = get_preset(spec.preset)  # unknown name: one line listing the registered models
    kwargs = dict(preset.tiny) if spec.tiny else {}
    if spec.width is not None:
        kwargs[preset.width_arg] = spec.width
    kwargs.update(spec.overrides)
    checkpoint = _checkpoint_source(spec.checkpoint) if spec.checkpoint else None
    try:
        model = load(spec.preset, checkpoint, device=device, **kwargs)
    except TypeError as exc:
        raise ZooError(f"{spec.preset} does not accept the settings {kwargs}: {exc}") from None
    params = inspect.signature(model.forward).parameters
    # MHTMA's forward names ``sketch`` in both presets; only the sketch-built one uses it.
    takes_sketch = "sketch" in params and getattr(model, "sketch", True) is not False
    return ServedModel(spec.name, spec, model, takes_seed="seed" in params, takes_sketch=takes_sketch)


def load_served_models(texts, device="cpu") -> dict[str, ServedModel]:
    specs = [parse_model_spec(t) for t in texts]
    if not specs:
        raise ZooError("give at least one --model to serve")
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ZooError(f"two --model entries are both named {duplicates[0]!r}: give one a label=NAME")
    return {spec.name: load_served_model(spec, device) for spec in specs}
