"""Image sources: a folder (recursive), a list file, a split manifest, or the embedded default photos."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from zoo.errors import ZooError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt", ".flist", ".lst")

# scikit-image's bundled photographs (public domain / CC0): shipped inside the wheel, no download. Colour
# photos of scenes only. With its six greyscale ones (camera, brick, grass, gravel, coins, moon) as half of the
# data, a demo model painted holes grey for its first ~2,000 steps (hole L1 16.8 at step 1,500 against 12.7
# without); without the telescope, fundus and microscope images (hubble_deep_field, retina, ihc) it fills the
# validation photos' liu holes better at step 1,500 (10.35 against 10.84; README's lever table).
DEFAULT_TRAIN = ["astronaut.png", "rocket.jpg", "motorcycle_left.png"]
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


SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(path) -> np.ndarray:
    """H x W x 3 uint8 RGB from any mode Pillow reads, upright (EXIF orientation applied), correctly scaled.

    16-bit grey (``I;16*``, and ``I``, which is how 16-bit files open) is scaled by 255 / 65535 instead of
    being clipped to white; float images (``F``) are taken as [0, 1] when they lie in it (else as 0..255, like
    Pillow); transparent pixels (RGBA, LA, palette with transparency, premultiplied modes) are composited onto
    white, as a viewer shows them; CMYK, YCbCr, HSV and LAB are converted to RGB; the first frame of an
    animation is used. Raises OSError when unreadable.
    """
    with Image.open(path) as img:
        img.load()
        return to_rgb8(ImageOps.exif_transpose(img))


def to_rgb8(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in SIXTEEN_BIT or mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float64))
        if mode in SIXTEEN_BIT:
            values = values * (255 / 65535)
        elif values.min() >= 0 and values.max() <= 1:
            values = values * 255
        grey = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:] / 255
        rgb = rgba[..., :3] * alpha + 255 * (1 - alpha)  # onto white
        return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    if mode == "LAB":
        from PIL import ImageCms

        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                            "LAB", "RGB")
        return np.asarray(ImageCms.applyTransform(img, transform))
    return np.asarray(img.convert("RGB"))  # RGB, L, 1 (0 / 255), P, CMYK, YCbCr, HSV


def sha256(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_split(source, out, val: float = 0.05, test: float = 0.05, seed: int = 0) -> dict:
    """Assign every image of ``source`` to train / val / test by a seeded shuffle and write a manifest
    with the SHA-256 of each file, so that every model is trained and scored on the same images."""
    out = Path(out)
    _check_writable(out)  # before hashing thousands of files
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
    return save_split(out, root, entries, seed)


def save_split(out, root, splits: dict, seed=None) -> dict:
    """Write a split manifest (``splits``: train / val / test -> [{"path", "sha256"}], paths relative to
    ``root``) atomically to ``out``."""
    out = Path(out)
    manifest = {"format": "inpaint-zoo-split/1", "root": str(Path(root).resolve()), "seed": seed, "splits": splits}
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ZooError(f"cannot write manifest {out}: {exc.strerror or exc}") from None
    return manifest


def _check_writable(out: Path) -> None:
    """Refuse an output path that cannot be written: a folder, or a parent that is a file or read-only."""
    if out.is_dir():
        raise ZooError(f"--out {out} is a folder; give a file name such as {out / 'split.json'}")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ZooError(f"cannot write {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ZooError(f"cannot write {out}: {ancestor} is not writable")


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
