"""Time a preset: forward pass (batch 1, eval, no grad) and one full training step (D + G update).

    python tools/bench.py --model deepfill_v2 --size 256
    python tools/bench.py --model mat --size 512 --device cuda --train-batch 4 --skip-train

Peak memory of DeepFill's contextual attention at large sizes (one size per process, forward only; the
O(side^4) attention makes 2048 take minutes on a CPU, so skip the warm-up run):

    nice python tools/bench.py --model deepfill_v2 --size 2048 --skip-train --warmup 0 --repeats 1

Forward + backward of the generator alone (batch 1, train mode, the preset's training-only model kwargs
such as activation checkpointing; ``--set grad_checkpointing=false`` turns it off), one measurement per process:

    python tools/bench.py --model hint --size 256 --fwd-bwd 1 --skip-forward --skip-train --repeats 1

FLOPs per forward (torch's flop counter: matmuls, convolutions, attention; element-wise work is not counted) and
the achieved GFLOP/s beside this machine's measured peak on a large matmul and a large convolution:

    python tools/bench.py --model hint --size 256 --flops --skip-train

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


def forward_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def machine_peaks(device, repeats=3) -> dict:
    """GFLOP/s of a large fp32 matmul and of a large 3x3 convolution: what 'close to the limit' means here."""
    a = torch.randn(2048, 2048, device=device)
    x = torch.randn(1, 128, 128, 128, device=device)
    w = torch.randn(128, 128, 3, 3, device=device)
    with torch.no_grad():
        matmul = timed(lambda: a @ a, device, repeats)
        conv = timed(lambda: torch.nn.functional.conv2d(x, w, padding=1), device, repeats)
    return {"matmul 2048^3": 2 * 2048**3 / matmul / 1e9,
            "conv 128->128 3x3 @128^2": 2 * 128 * 128 * 9 * 128 * 128 / conv / 1e9}


def batch(n, size, device, seed=0, layout=torch.contiguous_format):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[..., size // 4 : size // 2, size // 4 : 3 * size // 4] = 1
    return image.to(device, memory_format=layout), mask.to(device, memory_format=layout)


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
    p.add_argument("--fwd-bwd", type=int, default=0, metavar="BATCH",
                   help="also time generator forward + backward (no D, no optimiser) at this batch size")
    p.add_argument("--channels-last", action="store_true", help="generator and inputs in channels-last memory format")
    p.add_argument("--flops", action="store_true", help="FLOPs per forward and achieved GFLOP/s vs machine peak")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = zoo.get_preset(args.model)
    size = args.size or preset.native_size
    device = torch.device(args.device)
    overrides = dict(preset.recipe.train_model_kwargs)  # e.g. activation checkpointing; no-op without grad
    if args.width:
        overrides[preset.width_arg] = args.width
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        overrides[key] = parse_value(value)
    if preset.size_arg:  # a model with resolution-tied layers is built for the size it runs at
        overrides[preset.size_arg] = size
    G = zoo.create_model(args.model, **overrides).to(device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    G = G.to(memory_format=layout)
    n_params = sum(q.numel() for q in G.parameters())
    print(f"{args.model}: {n_params:,} generator parameters, {size}x{size}, {device}, "
          f"{torch.get_num_threads()} CPU threads, model kwargs {overrides}")

    if not args.skip_forward:
        image, mask = batch(args.forward_batch, size, device, layout=layout)
        G.eval()
        steps = GANSteps(None, G, None, None, None, None, preset.recipe)

        def forward():
            with torch.no_grad():
                steps.generate(image, mask)

        seconds = timed(forward, device, args.repeats, args.warmup)
        print(f"forward  batch {args.forward_batch}: {seconds * 1000:9.1f} ms   peak {peak_memory_mb(device):8.0f} MiB")
        if args.flops:
            flops = forward_flops(forward)
            peaks = ", ".join(f"{name} {value:.0f}" for name, value in machine_peaks(device).items())
            print(f"flops    batch {args.forward_batch}: {flops / 1e9:9.1f} GFLOP per forward, achieved "
                  f"{flops / seconds / 1e9:.1f} GFLOP/s; machine peak GFLOP/s: {peaks}")

    if args.fwd_bwd:
        image, mask = batch(args.fwd_bwd, size, device, seed=2, layout=layout)
        G.train()
        steps = GANSteps(None, G, None, None, None, None, preset.recipe)

        def forward_backward():
            out = steps.generate(image, mask)
            sum(stage.abs().mean() for stage in out.stages).backward()  # every stage, as the losses see them
            G.zero_grad(set_to_none=True)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(forward_backward, device, args.repeats, args.warmup)
        print(f"fwd+bwd  batch {args.fwd_bwd}: {seconds * 1000:9.1f} ms   peak {peak_memory_mb(device):8.0f} MiB")

    if not args.skip_train:
        recipe = preset.recipe
        D = discriminators.create_discriminator(recipe.discriminator, image_size=size,
                                                **recipe.discriminator_kwargs).to(device)
        accelerator = Accelerator(cpu=device.type == "cpu")
        gen_loss = GeneratorLoss(recipe.losses).to(device)
        opt_g = torch.optim.Adam(G.parameters(), lr=recipe.optim_g.lr, betas=recipe.optim_g.betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=recipe.optim_d.lr, betas=recipe.optim_d.betas)
        steps = GANSteps(accelerator, G.train(), D.train(), opt_g, opt_d, gen_loss, recipe)
        image, mask = batch(args.train_batch, size, device, seed=1, layout=layout)
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
