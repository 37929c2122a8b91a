"""Compare zoo's HINT with the official generator (ChrisChen1023/HINT) on the same random weights and input.

    python tools/hint_parity.py --official /path/to/HINT [--size 256] [--dim 48] [--seed 0]

The official checkout stays outside this repository; it needs ``einops`` importable (``--pythonpath`` adds a
folder to ``sys.path``). Its ``Downsample`` allocates with ``.cuda()``, which this script turns into a no-op on
the CPU. Random weights are drawn for the official model (with non-trivial LayerNorm affines and temperatures),
saved as an official ``{'iteration', 'generator'}`` file and loaded through ``zoo.load``; both models then
complete the same image: the official one on its convention ([0, 1], holes white), ours on the zoo's. The
EdgeConnect discriminator is compared the same way (official spectral-norm buffers copied into ours).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import discriminators  # noqa: E402
import zoo  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True, help="checkout of ChrisChen1023/HINT")
    p.add_argument("--pythonpath", default=None, help="extra folder for sys.path (e.g. where einops lives)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pythonpath:
        sys.path.insert(0, args.pythonpath)
    sys.path.insert(0, args.official)
    torch.Tensor.cuda = lambda self, *a, **k: self  # the official MPD hard-codes .cuda()
    from src.networks import HINT as OfficialHINT  # noqa: PLC0415
    from src.networks import Discriminator as OfficialDiscriminator  # noqa: PLC0415

    torch.manual_seed(args.seed)
    official = OfficialHINT(dim=args.dim).eval()
    with torch.no_grad():  # default init leaves LayerNorms at identity and temperatures at 1: perturb them
        for name, param in official.named_parameters():
            if name.endswith(("body.weight", "temperature")):
                param.uniform_(0.5, 1.5)
            elif name.endswith("body.bias"):
                param.uniform_(-0.2, 0.2)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "InpaintingModel_gen.pth"
        torch.save({"iteration": 1, "generator": official.state_dict()}, path)
        ours = zoo.load("hint", checkpoint=path, dim=args.dim)

    g = torch.Generator().manual_seed(args.seed + 1)
    s = args.size
    image01 = torch.rand(1, 3, s, s, generator=g)
    mask = torch.zeros(1, 1, s, s)
    mask[..., s // 4 : s // 2 + 3, s // 8 : 3 * s // 4] = 1
    mask[..., 3 * s // 4 :, 5 : s // 3] = 1

    with torch.no_grad():
        filled = image01 * (1 - mask) + mask
        masks = [torch.nn.functional.interpolate(mask, size=(s // f, s // f), mode="nearest") for f in (2, 4, 8)]
        reference = official(filled, mask, *masks)  # [0, 1]
        image = image01 * 2 - 1
        mine = (ours(image * (1 - mask), mask).final + 1) / 2
    diff = (mine - reference).abs()
    print(f"HINT dim {args.dim} at {s}x{s}, {torch.get_num_threads()} threads: output range "
          f"[{reference.min():.4f}, {reference.max():.4f}], max |ours - official| = {diff.max():.3e}, "
          f"mean = {diff.mean():.3e}")
    compare_discriminators(image01, OfficialDiscriminator)


def compare_discriminators(image01, OfficialDiscriminator):
    """The official D after a few training-mode calls (which move its power-iteration vectors), copied into
    ours (``weight_orig / weight_u / weight_v`` -> parametrization names), both in eval mode."""
    official = OfficialDiscriminator(in_channels=3, use_sigmoid=True)
    with torch.no_grad():
        for _ in range(3):
            official(image01)
    official.eval()
    names = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
             "weight_v": "parametrizations.weight.0._v"}
    state = {}
    for key, value in official.state_dict().items():
        if key.startswith("features."):
            continue  # the same tensors as conv1 (``self.conv1 = self.features``)
        prefix, _, leaf = key.rpartition(".")
        state[f"{prefix}.{names[leaf]}"] = value
    ours = discriminators.create_discriminator("patchgan_edgeconnect", in_channels=3, use_sigmoid=True)
    ours.load_state_dict(state)
    ours.eval()
    with torch.no_grad():
        reference = official(image01)[0]
        mine = ours(image01 * 2 - 1, None)
    print(f"EdgeConnect discriminator: output {tuple(mine.shape)}, max |ours - official| = "
          f"{(mine - reference).abs().max():.3e}")


if __name__ == "__main__":
    main()
