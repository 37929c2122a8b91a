"""Time a preset: forward pass (batch 1, eval, no grad) and one full training step (D + G update).

    python tools/bench.py --model deepfill_v2 --size 256
    python tools/bench.py --model mat --size 512 --device cuda --train-batch 4 --skip-train

Peak memory of DeepFill's contextual attention at large sizes (one size per process, forward only; the
O(side^4) attention makes 2048 take minutes on a CPU, so skip the warm-up run):

    nice python tools/bench.py --model deepfill_v2 --size 2048 --skip-train --warmup 0 --repeats 1

Reports median seconds over ``--repeats`` runs after one warm-up, and peak memory: resident set size on
the CPU (process peak, so run one measurement per process for clean numbers: --skip-train /
--skip-forward) or the allocator's peak on CUDA.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

import discriminators  # noqa: E402
import zoo  # noqa: E402
from losses import GeneratorLoss  # noqa: E402
from trainers.config import parse_value  # noqa: E402
from trainers.steps import GANSteps  # noqa: E402


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, device, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def batch(n, size, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 4 : size // 2, size // 4 : 3 * size // 4] = 1
    return image.to(device), mask.to(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, default=None, help="default: the preset's native size")
    p.add_argument("--width", type=int, default=None, help="override the preset's width argument")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any generator argument, e.g. --set channel_max=32 (repeatable)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--forward-batch", type=int, default=1)
    p.add_argument("--train-batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    p.add_argument("--skip-forward", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = zoo.get_preset(args.model)
    size = args.size or preset.native_size
    device = torch.device(args.device)
    overrides = {preset.width_arg: args.width} if args.width else {}
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        overrides[key] = parse_value(value)
    if preset.size_arg:  # a model with resolution-tied layers is built for the size it runs at
        overrides[preset.size_arg] = size
    G = zoo.create_model(args.model, **overrides).to(device)
    n_params = sum(q.numel() for q in G.parameters())
    print(f"{args.model}: {n_params:,} generator parameters, {size}x{size}, {device}, "
          f"{torch.get_num_threads()} CPU threads")

    if not args.skip_forward:
        image, mask = batch(args.forward_batch, size, device)
        G.eval()
        steps = GANSteps(None, G, None, None, None, None, preset.recipe)

        def forward():
            with torch.no_grad():
                steps.generate(image, mask)

        seconds = timed(forward, device, args.repeats, args.warmup)
        print(f"forward  batch {args.forward_batch}: {seconds * 1000:9.1f} ms   peak {peak_memory_mb(device):8.0f} MiB")

    if not args.skip_train:
        recipe = preset.recipe
        D = discriminators.create_discriminator(recipe.discriminator, image_size=size,
                                                **recipe.discriminator_kwargs).to(device)
        accelerator = Accelerator(cpu=device.type == "cpu")
        gen_loss = GeneratorLoss(recipe.losses).to(device)
        opt_g = torch.optim.Adam(G.parameters(), lr=recipe.optim_g.lr, betas=recipe.optim_g.betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=recipe.optim_d.lr, betas=recipe.optim_d.betas)
        steps = GANSteps(accelerator, G.train(), D.train(), opt_g, opt_d, gen_loss, recipe)
        image, mask = batch(args.train_batch, size, device, seed=1)
        counter = [0]

        def train_step():
            out = steps.generate(image, mask)
            steps.discriminator(image, mask, out, counter[0])
            steps.generator(image, mask, out)
            counter[0] += 1

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(train_step, device, args.repeats, args.warmup)
        print(f"train    batch {args.train_batch}: {seconds * 1000:9.1f} ms   peak {peak_memory_mb(device):8.0f} MiB"
              f"   (1 D + 1 G update; the recipe has {recipe.adversarial.d_steps} D step(s) per G step)")


if __name__ == "__main__":
    main()
