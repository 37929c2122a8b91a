"""Time HINT's MPD: our vectorised feature/mask interleave against a per-channel loop like the official one.

    python tools/bench_mpd.py [--size 256] [--batch 4] [--repeats 5] [--device cpu]

For each of the three MPD layers of the full model (dim 48) at ``--size``, reports the median time of the
interleave alone and of the whole layer (conv, unshuffle, interleave, grouped conv), loop vs vectorised, after
checking that both give the same tensor. The loop fills a zero tensor channel by channel, as the official
``Downsample.forward`` does (there on ``.cuda()``; here on ``--device``).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tools.bench import timed  # noqa: E402
from zoo.hint import MaskAwareDownsample, interleave_with_mask  # noqa: E402


def interleave_loop(features, mask):
    unshuffled_mask = F.pixel_unshuffle(mask, 2)
    n, c, h, w = features.shape
    t = torch.zeros((n, 2 * c, h, w), device=features.device, dtype=features.dtype)
    for i in range(c):
        t[:, 2 * i] = features[:, i]
    for i in range(c):
        t[:, 2 * i + 1] = unshuffled_mask[:, i % 4]
    return t


def mpd_loop(module, x, mask):
    return module.proj(interleave_loop(module.body(x), mask))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"MPD, batch {args.batch}, {device}, {torch.get_num_threads()} CPU threads; median ms over {args.repeats}")
    print(f"{'layer':>8} {'input':>16} | {'interleave loop':>15} {'vectorised':>10} {'x':>6} | "
          f"{'layer loop':>10} {'vectorised':>10} {'x':>6}")
    for level, name in enumerate(("down1_2", "down2_3", "down3_4")):
        dim, size = args.dim * 2**level, args.size // 2**level
        torch.manual_seed(level)
        module = MaskAwareDownsample(dim).to(device).eval()
        x = torch.randn(args.batch, dim, size, size, device=device)
        mask = (torch.rand(args.batch, 1, size, size, device=device) > 0.5).float()
        with torch.no_grad():
            features = module.body(x)
            assert torch.equal(interleave_loop(features, mask), interleave_with_mask(features, mask))
            il = 1000 * timed(partial(interleave_loop, features, mask), device, args.repeats)
            iv = 1000 * timed(partial(interleave_with_mask, features, mask), device, args.repeats)
            ll = 1000 * timed(partial(mpd_loop, module, x, mask), device, args.repeats)
            lv = 1000 * timed(partial(module, x, mask), device, args.repeats)
        print(f"{name:>8} {f'{dim}x{size}x{size}':>16} | {il:15.2f} {iv:10.2f} {il / iv:6.1f} | "
              f"{ll:10.2f} {lv:10.2f} {ll / lv:6.1f}")


if __name__ == "__main__":
    main()
