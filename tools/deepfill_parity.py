"""Compare our DeepFill v2 with nipponjo/deepfillv2-pytorch on the same random weights and input.

    git clone https://github.com/nipponjo/deepfillv2-pytorch /path/outside/the/repo
    python tools/deepfill_parity.py --official /path/outside/the/repo --size 256

For each of the port's generator classes (``networks_tf.Generator``: the TF release's layout, BGR;
``networks.Generator``: its fine-tuned PyTorch layout, RGB) this builds the class with random weights,
saves ``{"G": state_dict}`` as its released files are saved, loads that file with ``zoo.load`` and runs
both models on one input with the port's own calling convention (``x = [img * (1 - m), ones, ones * m]``,
``G(x, m)``). Our model always takes RGB; the port's TF layout is fed BGR (the flip our converter applies
to the weights). Prints the max absolute difference of both stages.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import zoo  # noqa: E402


def randomise(module: torch.nn.Module, seed: int, gain: float) -> None:
    """Random weights and biases (the port initialises biases to zero, which would hide bias mix-ups).

    ``gain`` 2 keeps the signal alive through the ~40 gated layers (outputs spread, not saturated), so the
    attention branch visibly matters; much larger gains saturate tanh and amplify rounding noise.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * gain / fan_in**0.5 if p.dim() > 1
                    else torch.randn(p.shape, generator=g) * 0.1)


def inputs(size, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    image = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 4 : h // 2 + 8, w // 3 : 3 * w // 4] = 1
    mask[..., 3 * h // 4 : 3 * h // 4 + 12, 8 : w // 2] = 1  # a thin second hole
    return image, mask


def official_forward(G, image, mask, bgr):
    x = image.flip(1) if bgr else image
    x = torch.cat([x * (1 - mask), torch.ones_like(mask), mask], dim=1)
    stage1, stage2 = G(x, mask)
    return (stage1.flip(1), stage2.flip(1)) if bgr else (stage1, stage2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True, help="checkout of nipponjo/deepfillv2-pytorch")
    p.add_argument("--size", type=int, nargs="+", default=[256], help="H [W]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gain", type=float, default=2.0, help="scale of the random weights (see randomise)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(args.official).resolve()))
    from model import networks, networks_tf  # the port's own code, outside this repository

    size = (args.size[0], args.size[-1])
    image, mask = inputs(size, args.seed)
    variants = {
        # layout: [(description, zoo.load overrides)]
        "networks_tf": [("port's attention settings (fuse off, mask resized once)",
                         dict(attention_fuse=False, mask_resize="direct")),
                        ("zoo.load defaults = official TF graph (fuse on, mask resized stepwise)", {})],
        "networks": [("zoo.load defaults", {})],
    }
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        for layout, module in (("networks_tf", networks_tf), ("networks", networks)):
            G = module.Generator(cnum_in=5, cnum=48, return_flow=False)
            randomise(G, args.seed, args.gain)
            G.eval()
            path = Path(tmp) / f"states_{layout}.pth"
            torch.save({"G": G.state_dict()}, path)
            reference = official_forward(G, image, mask, bgr=layout == "networks_tf")
            for description, overrides in variants[layout]:
                ours = zoo.load("deepfill_v2", checkpoint=path, **overrides)
                out = ours(image * (1 - mask), mask)
                diffs = [float((a - b).abs().max()) for a, b in zip(out.stages, reference)]
                print(f"{layout:12s} {size[0]}x{size[1]}  tf_mode={ours.tf_mode!s:5s}  {description}: "
                      f"max |diff| stage1 {diffs[0]:.3g}, stage2 {diffs[1]:.3g}  "
                      f"(output std {float(reference[1].std()):.3f})")


if __name__ == "__main__":
    main()
