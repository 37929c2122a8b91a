"""Image sources: a folder (recursive), a list file, a split manifest, or the embedded default photos."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from zoo.errors import ZooError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt", ".flist", ".lst")

# scikit-image's bundled photographs (public domain / CC0): shipped inside the wheel, no download.
DEFAULT_TRAIN = ["astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg",
                 "ihc.png", "camera.png", "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png"]
DEFAULT_VAL = ["chelsea.png", "coffee.png"]


def default_images(split: str = "train") -> list[Path]:
    import skimage.data

    root = Path(skimage.data.__file__).parent
    names = DEFAULT_TRAIN if split == "train" else DEFAULT_VAL
    paths = [root / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ZooError(f"scikit-image's bundled photos are missing: {missing[0]}")
    return paths


def list_images(source) -> list[Path]:
    """All images under a folder (recursive, sorted), or the entries of a list file."""
    path = Path(source)
    if not path.exists():
        raise ZooError(f"data path {path} does not exist")
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not images:
            raise ZooError(f"no images found in {path} (looked for {', '.join(IMAGE_EXTENSIONS)})")
        return images
    if path.suffix.lower() in LIST_EXTENSIONS:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        images = [p if p.is_absolute() else path.parent / p for p in map(Path, lines)]
        if not images:
            raise ZooError(f"list file {path} names no images")
        return images
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return [path]
    raise ZooError(f"data path {path} is neither a folder, a list file ({', '.join(LIST_EXTENSIONS)}) "
                   "nor a split manifest (.json)")


def load_image(path) -> np.ndarray:
    """H x W x 3 uint8 RGB; grey and RGBA images are converted. Raises OSError when unreadable."""
    with Image.open(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def sha256(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_split(source, out, val: float = 0.05, test: float = 0.05, seed: int = 0) -> dict:
    """Assign every image of ``source`` to train / val / test by a seeded shuffle and write a manifest
    with the SHA-256 of each file, so that every model is trained and scored on the same images."""
    images = list_images(source)
    root = Path(source) if Path(source).is_dir() else Path(source).parent
    order = np.random.default_rng(seed).permutation(len(images))
    n_val, n_test = round(val * len(images)), round(test * len(images))
    names = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
    entries = {}
    with tqdm(total=len(images), desc="checksums", unit="img") as bar:
        for split, idx in names.items():
            entries[split] = []
            for i in sorted(idx):
                p = images[i]
                entries[split].append({"path": os.path.relpath(p.resolve(), root.resolve()), "sha256": sha256(p)})
                bar.update()
    manifest = {"format": "inpaint-zoo-split/1", "root": str(root.resolve()), "seed": seed, "splits": entries}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out)
    return manifest


def read_split(manifest_path, split: str, verify: bool = False) -> list[Path]:
    path = Path(manifest_path)
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["splits"][split]
        root = Path(manifest["root"])
    except FileNotFoundError:
        raise ZooError(f"split manifest {path} does not exist") from None
    except (ValueError, KeyError, TypeError):
        raise ZooError(f"{path} is not a split manifest with a {split!r} split") from None
    if not root.is_dir():  # manifests travel with their data: fall back to the manifest's folder
        root = path.parent
    paths = [root / e["path"] for e in entries]
    if verify:
        for p, e in zip(tqdm(paths, desc=f"verify {split}", unit="img"), entries):
            if not p.is_file() or sha256(p) != e["sha256"]:
                raise ZooError(f"{p} is missing or differs from the checksum in {path}")
    return paths


def resolve_source(data, split: str = "train") -> list[Path]:
    """Images for ``split`` from --data: None = embedded photos, a .json = split manifest, else all images."""
    if data is None:
        return default_images("train" if split == "train" else "val")
    if str(data).endswith(".json"):
        return read_split(data, split)
    return list_images(data)
