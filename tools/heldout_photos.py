"""Build a held-out set of real photos that the embedded demo never trains on, from files that packages ship.

    apt-get install -y lomiri-wallpapers-16.04 lomiri-wallpapers-20.04   # optional: 12 of the 15 photos
    python tools/heldout_photos.py --out heldout
    zoo compare --model mhtma,checkpoint=runs/demo,label=demo mean_fill opencv_telea opencv_ns \
        --data heldout/split.json --masks liu --size 64 --metrics l1_hole,psnr

Nothing is downloaded: the script reads the photos where their packages put them (Debian's Ubuntu-Touch
wallpaper packages, scikit-learn's and matplotlib's sample images) and skips any that are missing, saying
so. None of them is among the embedded training photos (scikit-image's, ``data.images.default_images``).
The photos are CC0 / CC-BY / CC-BY-SA / public domain (see ``PHOTOS``): they could be redistributed with
attribution, but the set is rebuilt instead, so the repository carries no third-party images.

Each photo gives five views, all written as PNG into ``--out``: its centre square (shorter side resized to
``--side``) and that square's four quadrants (finer detail, like a closer shot). ``split.json`` is a split
manifest (every view in ``test``, with its SHA-256) and ``sources.json`` names each source file, its
package, licence, author and SHA-256, so two machines can tell whether they built the same set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from data.images import default_images, save_split, sha256  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

BACKGROUNDS = Path("/usr/share/backgrounds")

# (where the file lies, package, licence, author). Only photographs: the packages' drawn or rendered
# wallpapers (gnome-backgrounds, desktop-base, ukui-wallpapers, most of lomiri's) are left out.
PHOTOS = [
    *[(BACKGROUNDS / name, "lomiri-wallpapers-16.04", lic, author) for name, lic, author in [
        ("Bridge_by_Sander_Klootwijk.jpg", "CC-BY-SA-4.0", "Sander Klootwijk"),
        ("Dragonfly_by_Bolly.jpg", "CC-BY-SA-4.0", "Bolly"),
        ("Picture_0B_by_freespace.jpg", "CC-BY-4.0", "Trevor Freespace"),
        ("Picture_1A_by_freespace.jpg", "CC-BY-4.0", "Trevor Freespace"),
        ("Wine_by_Jakkub_Mede.jpg", "CC-BY-4.0", "Jakkub Mede"),
        ("aitzgorri_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("friends_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("life_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
        ("seeding_by_Clements_Engelhardt.jpg", "CC0-1.0", "Clemens Engelhardt"),
        ("sunset_by_Aitzol_Berasategi.jpg", "CC-BY-4.0", "Aitzol Berasategi"),
    ]],
    (BACKGROUNDS / "Kleiber_by_Lukas_Baubkus.jpg", "lomiri-wallpapers-20.04",
     "CC-BY-SA-3.0", "Lukas Baubkus"),
    ("sklearn:china.jpg", "scikit-learn", "CC-BY-2.0", "danielbuechele (Flickr)"),
    ("sklearn:flower.jpg", "scikit-learn", "CC-BY-2.0", "vultilion (Flickr)"),
    ("matplotlib:grace_hopper.jpg", "matplotlib", "public domain (U.S. Navy photo)", "U.S. Navy"),
]


def locate(where) -> Path:
    """A package file's path on this machine (it may not exist)."""
    if isinstance(where, Path):
        return where
    package, _, name = str(where).partition(":")
    if package == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / name
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    raise ValueError(f"unknown source {where!r}")


def views(image: Image.Image, side: int) -> dict[str, Image.Image]:
    """The centre square (shorter side resized to ``side``) and its four quadrants."""
    w, h = image.size
    scale = side / min(w, h)
    resized = image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.Resampling.LANCZOS)
    left, top = (resized.width - side) // 2, (resized.height - side) // 2
    square = resized.crop((left, top, left + side, top + side))
    half = side // 2
    out = {"full": square}
    for name, (x, y) in {"q00": (0, 0), "q01": (half, 0), "q10": (0, half), "q11": (half, half)}.items():
        out[name] = square.crop((x, y, x + half, y + half))
    return out


def build(out, side: int = 512, log=print) -> dict:
    out = Path(out)
    training = {sha256(p) for p in default_images("train") + default_images("val")}
    out.mkdir(parents=True, exist_ok=True)
    sources, entries, missing = [], [], []
    for where, package, licence, author in PHOTOS:
        path = locate(where)
        if not path.is_file():
            missing.append(f"{path.name} ({package})")
            continue
        digest = sha256(path)
        if digest in training:  # cannot happen with the list above; guards against edits to it
            raise ZooError(f"{path} is one of the embedded training photos")
        with Image.open(path) as img:
            photo = img.convert("RGB")
        for view, image in views(photo, side).items():
            name = f"{path.stem}_{view}.png"
            tmp = out / f"tmp-{name}"
            image.save(tmp, format="PNG")
            os.replace(tmp, out / name)
            entries.append({"path": name, "sha256": sha256(out / name)})
        sources.append({"file": str(path), "package": package, "licence": licence, "author": author,
                        "sha256": digest, "size": list(photo.size)})
    if not sources:
        raise ZooError("none of the held-out photos is installed (see PHOTOS in tools/heldout_photos.py)")
    for name in missing:
        log(f"note: {name} is not installed; the set has fewer photos")
    manifest = save_split(out / "split.json", out, {"train": [], "val": [], "test": entries})
    (out / "sources.json").write_text(json.dumps({"side": side, "photos": sources}, indent=1))
    fingerprint = __import__("hashlib").sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()
    log(f"wrote {len(entries)} views of {len(sources)} photos to {out} (set sha256 {fingerprint[:16]}); "
        f"score with --data {out / 'split.json'}")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="heldout", help="folder for the views, split.json and sources.json")
    p.add_argument("--side", type=int, default=512, help="side of each photo's centre square in pixels")
    args = p.parse_args(argv)
    try:
        build(args.out, args.side)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
