"""Fixed evaluation mask sets: seeded, hashed, identical on every machine that has the same libraries.

A protocol set is named by its protocol (``liu``, ``lama_thin`` / ``lama_medium`` / ``lama_thick``,
``mat_small`` / ``mat_large``), a size and a seed. Mask ``k`` is drawn by a generator seeded with
``(seed, k)``, so the first ``n`` masks are the same whatever length the set is given: an evaluation on
``n`` images uses exactly the first ``n`` masks of the reference set. Liu sets interleave their six
buckets (mask ``k`` is in bucket ``k % 6``, touching the border when ``(k // 6)`` is even), so any prefix
is balanced over buckets.

A set's identity is its SHA-256 (over the per-mask SHA-256 of the raw 0/1 bytes, in order, after a
``HxW`` header). ``write_mask_set`` stores a set as PNG files (white = hole, the LaMa / IOPaint
convention) with a ``manifest.json``; ``load_mask_set`` reads such a folder back and checks every file
against the manifest, reads any other folder of mask images as a user set, or generates a protocol.
``data/manifests/mask_sets.json`` records the hash of the first masks of every protocol at 256 and 512
(seed 0): generating them again on another machine must give the same bytes, or the evaluation warns.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.masks import MASK_EXTENSIONS, make_mask, read_mask_file, touches_border
from zoo.errors import MaskError, ZooError

FORMAT = "inpaint-zoo-masks/1"
LIU_EDGES = (1, 10, 20, 30, 40, 50, 60)  # percent: Liu et al.'s six hole-to-image ratio buckets
DEFAULT_EDGES = (0, 10, 20, 30, 40, 50, 60, 100)  # other protocols and user masks: 10 % steps, 60-100 % last
REFERENCE_FILE = Path(__file__).parent / "manifests" / "mask_sets.json"
REFERENCE_COUNT = 60  # masks per protocol whose hash is recorded in REFERENCE_FILE


def _liu_kwargs(k: int) -> dict:
    b = k % 6
    return dict(min_percent=LIU_EDGES[b], max_percent=LIU_EDGES[b + 1], border=(k // 6) % 2 == 0)


@dataclass(frozen=True)
class Protocol:
    generator: str
    count: int  # size of the reference set; longer evaluations reuse masks from the start
    edges: tuple[int, ...]
    description: str
    per_mask: Callable[[int], dict] | None = None  # generator kwargs of mask k


PROTOCOLS = {
    "liu": Protocol("liu_irregular", 12_000, LIU_EDGES, "Liu et al.-style irregular masks, six ratio buckets "
                    "(1-10 %, ..., 50-60 %), half touching the border", _liu_kwargs),
    "lama_thin": Protocol("lama_thin", 30_000, DEFAULT_EDGES, "LaMa thin strokes (<= 50 % area)"),
    "lama_medium": Protocol("lama_medium", 30_000, DEFAULT_EDGES, "LaMa medium strokes or boxes (<= 50 % area)"),
    "lama_thick": Protocol("lama_thick", 30_000, DEFAULT_EDGES, "LaMa thick strokes or boxes (<= 50 % area)"),
    "mat_small": Protocol("mat_small", 36_500, DEFAULT_EDGES, "MAT / CoModGAN small free-form masks"),
    "mat_large": Protocol("mat_large", 36_500, DEFAULT_EDGES, "MAT / CoModGAN large free-form masks"),
}


def bucket_labels(edges) -> list[str]:
    return [f"{lo}-{hi}%" for lo, hi in zip(edges[:-1], edges[1:])]


def bucket_index(hole_pixels: int, total_pixels: int, edges) -> int | None:
    """The bucket [lo %, hi %) holding ``hole_pixels / total_pixels`` (integer arithmetic, so a ratio that is
    exactly on an edge goes to the upper bucket); a last edge of 100 % is inclusive. None outside."""
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        if 100 * hole_pixels >= lo * total_pixels and (100 * hole_pixels < hi * total_pixels
                                                       or (hi == 100 and hole_pixels == total_pixels)):
            return i
    return None


def mask_sha256(mask: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).hexdigest()


def set_sha256(mask_hashes, height: int, width: int) -> str:
    digest = hashlib.sha256(f"{height}x{width}\n".encode())
    for h in mask_hashes:
        digest.update(h.encode())
    return digest.hexdigest()


def generate_mask(protocol: str, k: int, size: int, seed: int = 0) -> np.ndarray:
    """Mask ``k`` of a protocol set: H x W uint8 in {0, 1}, 1 = hole."""
    spec = PROTOCOLS[protocol]
    kwargs = spec.per_mask(k) if spec.per_mask else {}
    rng = np.random.default_rng([seed, k])
    return (make_mask(spec.generator, rng, size, size, **kwargs) > 0.5).astype(np.uint8)


class MaskSet:
    """An ordered, hashed list of masks with their hole ratios and buckets.

    Masks are produced on demand (``mask_set[k]``), regenerated or re-read, and checked against the hash
    recorded when the set was built, so a large set never has to sit in memory.
    """

    def __init__(self, name: str, height: int, width: int, edges, entries: list[dict], source: dict,
                 loader: Callable[[int], np.ndarray]):
        self.name, self.height, self.width = name, height, width
        self.edges = tuple(edges)
        self.labels = bucket_labels(self.edges)
        self.entries, self.source, self._loader = entries, source, loader

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, k: int) -> np.ndarray:
        mask = self._loader(k)
        if mask_sha256(mask) != self.entries[k]["sha256"]:
            raise MaskError(f"mask {k} of {self.name} changed since the set was built (not reproducible)")
        return mask

    @property
    def sha256(self) -> str:
        return set_sha256([e["sha256"] for e in self.entries], self.height, self.width)

    @property
    def ratios(self) -> np.ndarray:
        return np.array([e["hole_ratio"] for e in self.entries])

    @property
    def buckets(self) -> list[str | None]:
        return [e["bucket"] for e in self.entries]

    def manifest(self) -> dict:
        return {"format": FORMAT, "name": self.name, **self.source, "height": self.height, "width": self.width,
                "count": len(self), "bucket_edges": list(self.edges), "hole": "white", "sha256": self.sha256,
                "masks": self.entries}


def _entry(mask: np.ndarray, edges, **extra) -> dict:
    hole, total = int(np.count_nonzero(mask)), mask.size
    b = bucket_index(hole, total, edges)
    return {**extra, "hole_ratio": round(hole / total, 6), "bucket": None if b is None else bucket_labels(edges)[b],
            "border": touches_border(mask), "sha256": mask_sha256(mask)}


def protocol_set(protocol: str, size: int, count: int | None = None, seed: int = 0,
                 progress: bool = True) -> MaskSet:
    """The first ``count`` masks (default: the reference count) of ``protocol`` at ``size`` x ``size``."""
    if protocol not in PROTOCOLS:
        raise ZooError(f"unknown mask protocol {protocol!r}; known: {', '.join(PROTOCOLS)} or a folder of masks")
    if size < 16:
        raise ZooError(f"mask size {size} is too small (at least 16 px)")
    spec = PROTOCOLS[protocol]
    count = spec.count if count is None else count
    if count < 1:
        raise ZooError("a mask set needs at least one mask")
    entries = []
    for k in tqdm(range(count), desc=f"masks {protocol}@{size}", unit="mask", disable=not progress or count < 200):
        entries.append(_entry(generate_mask(protocol, k, size, seed), spec.edges, index=k))
    source = {"protocol": protocol, "generator": spec.generator, "seed": seed, "reference_count": spec.count}
    return MaskSet(f"{protocol}@{size}", size, size, spec.edges, entries, source,
                   lambda k: generate_mask(protocol, k, size, seed))


def folder_set(folder, size: int, hole_value: str = "white", edges=DEFAULT_EDGES) -> MaskSet:
    """Every mask image under ``folder`` (sorted), resized (nearest) to ``size`` x ``size``."""
    root = Path(folder)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in MASK_EXTENSIONS and p.is_file())
    if not paths:
        raise ZooError(f"no mask images found in {root}")

    def load(k):
        return read_mask_file(paths[k], size, size, hole_value).astype(np.uint8)

    entries = []
    for k, path in enumerate(tqdm(paths, desc=f"masks {root.name}", unit="mask", disable=len(paths) < 200)):
        mask = load(k)
        if not mask.any():
            raise MaskError(f"mask file {path} marks no hole (hole pixels are {hole_value}; see --hole)")
        entries.append(_entry(mask, edges, file=os.path.relpath(path, root)))
    source = {"protocol": "files", "folder": str(root.resolve()), "hole_value": hole_value}
    return MaskSet(f"{root.name}@{size}", size, size, edges, entries, source, load)


def write_mask_set(mask_set: MaskSet, folder) -> Path:
    """Store ``mask_set`` as PNG files (white = hole) plus ``manifest.json`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k in tqdm(range(len(mask_set)), desc="write masks", unit="mask", disable=len(mask_set) < 200):
        name = f"{k:05d}.png"
        if not cv2.imwrite(str(folder / name), mask_set[k] * 255):
            raise ZooError(f"cannot write {folder / name}")
        entries.append({**mask_set.entries[k], "file": name})
    manifest = {**mask_set.manifest(), "masks": entries}
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / "manifest.json")
    return folder / "manifest.json"


def stored_set(manifest_path) -> MaskSet:
    """A set written by ``write_mask_set``: every file is checked against the manifest's hash."""
    path = Path(manifest_path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        entries, height, width = manifest["masks"], int(manifest["height"]), int(manifest["width"])
        edges = tuple(manifest["bucket_edges"])
        if manifest.get("format") != FORMAT:
            raise ValueError
    except FileNotFoundError:
        raise ZooError(f"mask manifest {path} does not exist") from None
    except (ValueError, KeyError, TypeError):
        raise ZooError(f"{path} is not an inpaint-zoo mask manifest") from None
    folder = path.parent

    def load(k):
        file = folder / entries[k]["file"]
        data = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        if data is None:
            raise MaskError(f"cannot read mask file {file}")
        if data.shape != (height, width):
            raise MaskError(f"mask file {file} is {data.shape[1]}x{data.shape[0]}, its manifest says {width}x{height}")
        return (data > 127).astype(np.uint8)

    source = {k: v for k, v in manifest.items() if k not in ("format", "name", "height", "width", "count",
                                                            "bucket_edges", "hole", "sha256", "masks")}
    mask_set = MaskSet(manifest.get("name", folder.name), height, width, edges, entries, source, load)
    if mask_set.sha256 != manifest.get("sha256"):
        raise ZooError(f"{path}: the mask hashes do not add up to the manifest's sha256 (edited manifest?)")
    return mask_set


def load_mask_set(spec, size: int, count: int | None = None, seed: int = 0, hole_value: str = "white") -> MaskSet:
    """``spec``: a protocol name, a folder (or manifest.json) written by ``write_mask_set``, or any folder of
    mask images. ``count`` applies to protocols (the first ``count`` masks)."""
    spec = str(spec)
    if spec in PROTOCOLS:
        return protocol_set(spec, size, count, seed)
    path = Path(spec)
    if path.is_file() and path.suffix == ".json" or (path / "manifest.json").is_file():
        mask_set = stored_set(path)
        if (mask_set.height, mask_set.width) != (size, size):
            raise ZooError(f"mask set {spec} is {mask_set.width}x{mask_set.height}, the evaluation runs at "
                           f"{size}x{size} (pass --size {mask_set.height})")
        return mask_set
    if path.is_dir():
        return folder_set(path, size, hole_value)
    raise ZooError(f"--masks {spec!r} is neither a protocol ({', '.join(PROTOCOLS)}) nor a folder of masks")


def reference_hashes() -> dict:
    return json.loads(REFERENCE_FILE.read_text()) if REFERENCE_FILE.is_file() else {}


def check_reference(mask_set: MaskSet) -> str:
    """Compare a protocol set with the recorded hash of its first masks: ``matches``, ``differs`` (with a
    warning: scores are then not comparable with other installations) or ``no reference``."""
    src = mask_set.source
    key = f"{src.get('protocol')}@{mask_set.height}"
    ref = reference_hashes().get(key)
    if ref is None or src.get("seed") != ref["seed"]:
        return "no reference"
    n = ref["count"]
    if len(mask_set) >= n:
        hashes = [e["sha256"] for e in mask_set.entries[:n]]
    else:
        hashes = [mask_sha256(generate_mask(src["protocol"], k, mask_set.height, ref["seed"])) for k in range(n)]
    if set_sha256(hashes, mask_set.height, mask_set.width) == ref["sha256"]:
        return "matches"
    warnings.warn(f"the {key} masks differ from the recorded reference set (another OpenCV / NumPy version?): "
                  "scores are not comparable with evaluations made elsewhere", stacklevel=2)
    return "differs"


def record_references(sizes=(256, 512), seed: int = 0, count: int = REFERENCE_COUNT) -> dict:
    """Regenerate the reference hashes (run by tools/make_mask_set.py --record-references)."""
    table = {}
    for protocol in PROTOCOLS:
        for size in sizes:
            mask_set = protocol_set(protocol, size, count, seed, progress=False)
            table[f"{protocol}@{size}"] = {"seed": seed, "count": count, "sha256": mask_set.sha256}
    return table
