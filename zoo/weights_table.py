"""Released weights, one entry per file, the way timm's ``default_cfgs`` describe pretrained classifiers.

Each family file holds a table of ``WeightEntry`` beside its presets and passes it to ``@register_model`` as
``checkpoints=weight_table(...)``; the entry ``tag`` names it as ``PRESET.TAG`` (``mat.places512``). Sources
are tried in order (Hugging Face file, plain URL, Google Drive file id). ``hash=None`` marks a file whose
authors published no hash: the first verified download records its sha256 beside the cached file and every
later load checks it. Nothing here imports torch or a family.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HFFile:
    """A file in a Hugging Face Hub model repository (``hf_hub_download`` caches, resumes and pins it)."""

    repo: str
    filename: str
    revision: str = "main"

    def __str__(self):
        return f"hf://{self.repo}@{self.revision}/{self.filename}"


@dataclass(frozen=True)
class URLFile:
    url: str

    def __str__(self):
        return self.url


@dataclass(frozen=True)
class GDriveFile:
    """A Google Drive file id (downloaded with ``gdown``)."""

    file_id: str

    def __str__(self):
        return f"https://drive.google.com/uc?id={self.file_id}"


HASH_KINDS = ("sha256", "md5", "sha256-prefix")


@dataclass(frozen=True)
class WeightEntry:
    """One released weight file of a preset."""

    tag: str
    filename: str  # the official file name; the cache keeps it
    sources: tuple = ()  # HFFile / URLFile / GDriveFile, tried in order; () = manual download from ``origin``
    hash: str | None = None  # as published, None = no published hash
    hash_kind: str = "sha256"  # sha256 | md5 | sha256-prefix (mmagic's 8 hex digits in the file name)
    size: int | None = None  # bytes, when published
    license: str = "unknown"
    data: str = ""
    resolution: int | None = None
    contents: tuple[str, ...] = ("G",)  # networks in the file: G, G_ema, D
    format: str = ""  # the layout the family's converter reads
    # Official files that need unpickling: ``fn(path) -> {"G": state, "G_ema": state, "D": state}``. The hub
    # converts them once into a safetensors bundle in the cache; later loads read only that.
    reader: Callable[[Any], dict] | None = None
    companions: tuple[str, ...] = ()  # files that live beside it (HINT's InpaintingModel_dis.pth)
    origin: str = ""  # the page that publishes the file
    paper: str = ""
    notes: str = ""
    loadable: bool = True  # False: listed and verifiable, but no converter maps its layout onto our model
    model_kwargs: dict = field(default_factory=dict)  # generator arguments the file needs

    def __post_init__(self):
        if self.hash_kind not in HASH_KINDS:
            raise ValueError(f"{self.tag}: hash_kind must be one of {HASH_KINDS}")
        if not re.fullmatch(r"[a-z0-9_]+", self.tag):
            raise ValueError(f"weight tag {self.tag!r}: lower-case letters, digits and _ only")

    def source_kinds(self) -> str:
        kinds = {HFFile: "hf", URLFile: "url", GDriveFile: "gdrive"}
        return "+".join(kinds[type(s)] for s in self.sources) or "manual"

    def hash_text(self) -> str:
        return f"{self.hash_kind}:{self.hash}" if self.hash else "no published hash"


def weight_table(*entries: WeightEntry) -> dict[str, WeightEntry]:
    """``{tag: entry}`` in the given order (the first is the preset's default ``pretrained=True`` weight)."""
    table = {}
    for entry in entries:
        if entry.tag in table:
            raise ValueError(f"weight tag {entry.tag!r} listed twice")
        table[entry.tag] = entry
    return table


def env_name(key: str) -> str:
    """The per-entry override variable: ``mat.places512`` -> ``ZOO_WEIGHTS_MAT_PLACES512`` (a path or a URL);
    ``..._SHA256`` beside it sets the expected sha256 of an overriding URL."""
    return "ZOO_WEIGHTS_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


CC_BY_NC = "CC BY-NC 4.0 (non-commercial)"
