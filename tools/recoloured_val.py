"""Recoloured copies of the embedded validation photos: a probe for whether a recipe fills holes in colours
its few training photos do not have, without touching the held-out set (tools/heldout_photos.py).

    python tools/recoloured_val.py --out recoloured
    zoo eval --model mhtma --checkpoint runs/x --data recoloured/split.json --masks liu --size 64 --pairs 96

chelsea and coffee, each in eight colourings (as they are, and seven hue turns of up to half the circle with
saturation scaled by 0.6 to 1.6): 16 PNGs and a split manifest (every copy in ``test``, with its SHA-256).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from data.images import default_images, save_split, sha256  # noqa: E402

# (hue turn as a fraction of the circle, saturation factor)
COLOURINGS = [(0, 1), (0.15, 1), (-0.15, 1.4), (0.3, 0.7), (-0.3, 1), (0.5, 1.2), (0.4, 0.6), (-0.45, 1.6)]


def build(out) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for path in default_images("val"):
        with Image.open(path) as img:
            x = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
        for i, (hue, saturation) in enumerate(COLOURINGS):
            y = v2.functional.adjust_saturation(v2.functional.adjust_hue(x, hue), saturation).clamp(0, 1)
            name = f"{path.stem}_{i}.png"
            Image.fromarray((y.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(out / name)
            entries.append({"path": name, "sha256": sha256(out / name)})
    return save_split(out / "split.json", out, {"train": [], "val": [], "test": entries})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the copies and split.json into")
    args = parser.parse_args(argv)
    manifest = build(args.out)
    print(f"wrote {len(manifest['splits']['test'])} recoloured photos and {Path(args.out) / 'split.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
