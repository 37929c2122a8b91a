"""``zoo``: list, train, split, inpaint.

Bad input (paths, images, masks, checkpoints, model names, settings) ends with one ``error:`` line and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.errors import ZooError


def _count_parameters(name: str) -> int:
    import torch

    from zoo.registry import create_model

    try:
        with torch.device("meta"):  # counts without allocating (MAT and HINT are large)
            model = create_model(name)
    except Exception:
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def cmd_list(args) -> int:
    from zoo.registry import get_preset, list_models

    rows = [("model", "params", "stages", "discriminator", "size", "paper")]
    for name in list_models():
        preset = get_preset(name)
        rows.append((name, f"{_count_parameters(name) / 1e6:.2f}M", str(preset.num_stages),
                     preset.recipe.discriminator, str(preset.native_size), preset.paper.split(",")[0]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def cmd_train(args) -> int:
    from trainers.config import resolve_config
    from trainers.trainer import train

    if args.resume:  # the run's own config, with a new step budget if given
        overrides = {k: v for k, v in dict(max_steps=args.max_steps, workers=args.workers,
                                           tracker=args.tracker).items() if v is not None}
        run_dir = train(resume=args.resume, **overrides)
    else:
        flags = dict(data=args.data, size=args.size, batch_size=args.batch_size, max_steps=args.max_steps,
                     out=args.out, seed=args.seed, workers=args.workers, tracker=args.tracker,
                     init_from=args.init_from, cpu=args.cpu or None)
        cfg = resolve_config(args.model, args.config, flags, args.set, width=args.width)
        run_dir = train(cfg)
    print(f"done: checkpoints and samples in {run_dir}")
    return 0


def cmd_split(args) -> int:
    from data.images import write_split

    manifest = write_split(args.data, args.out, val=args.val, test=args.test, seed=args.seed)
    counts = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
    print(f"wrote {args.out}: {counts}")
    return 0


def cmd_inpaint(args) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from data.datasets import to_tensor
    from data.images import load_image
    from data.masks import read_mask_file
    from zoo.api import inpaint, load

    try:
        image = load_image(args.image)
    except OSError as exc:
        raise ZooError(f"cannot read image {args.image}: {exc.__class__.__name__}") from None
    mask = read_mask_file(args.mask, hole_value=args.hole)
    if mask.shape != image.shape[:2]:
        raise ZooError(f"mask {args.mask} is {mask.shape[1]}x{mask.shape[0]} but image {args.image} is "
                       f"{image.shape[1]}x{image.shape[0]}")
    if mask.sum() == 0:
        raise ZooError(f"mask {args.mask} marks no hole (hole pixels are {args.hole}; see --hole)")
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    model = load(args.model, args.checkpoint, device=device)
    torch.manual_seed(args.seed)  # stochastic generators (MAT's latent): one seed, one variant
    result = inpaint(model, to_tensor(image)[None], torch.from_numpy(mask)[None, None])
    out = ((result[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(out)).save(args.out)
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="GAN inpainting model zoo")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="registered models").set_defaults(fn=cmd_list)

    t = sub.add_parser("train", help="train a model (accelerate launches it on several GPUs)")
    t.add_argument("--model", help="registered model name (see `zoo list`)")
    t.add_argument("--data", help="image folder, list file or split manifest (default: embedded photos)")
    t.add_argument("--size", type=int, help="training crop size (default: the model's native size; 128 "
                   "on the embedded photos)")
    t.add_argument("--batch-size", type=int, help="per-process batch size (default: the paper's; 4 on the "
                   "embedded photos)")
    t.add_argument("--max-steps", type=int, help="generator steps to train for")
    t.add_argument("--width", type=int, help="base width (cnum / dim) for a smaller model of the same design")
    t.add_argument("--out", help="run directory (default runs/MODEL-TIMESTAMP)")
    t.add_argument("--resume", metavar="RUN", help="continue the run in RUN exactly where it stopped")
    t.add_argument("--init-from", metavar="CKPT", help="start G from a checkpoint (zoo or official format)")
    t.add_argument("--config", metavar="FILE.yaml", help="settings file, e.g. a run's config.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. recipe.optim_g.lr=2e-4 (repeatable)")
    t.add_argument("--seed", type=int)
    t.add_argument("--workers", type=int, help="data-loader workers per process")
    t.add_argument("--tracker", choices=["wandb", "tensorboard", "none"], help="default wandb (offline "
                   "without a key)")
    t.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("split", help="write train/val/test manifests with checksums")
    s.add_argument("--data", required=True, help="image folder or list file")
    s.add_argument("--out", required=True, help="manifest path (.json)")
    s.add_argument("--val", type=float, default=0.05)
    s.add_argument("--test", type=float, default=0.05)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_split)

    i = sub.add_parser("inpaint", help="fill the holes of one image")
    i.add_argument("--model", required=True)
    i.add_argument("--checkpoint", help="zoo run checkpoint or official weights")
    i.add_argument("--image", required=True)
    i.add_argument("--mask", required=True, help="mask image, same size as the image")
    i.add_argument("--hole", choices=["white", "black"], default="white", help="which colour marks holes")
    i.add_argument("--out", required=True)
    i.add_argument("--cpu", action="store_true")
    i.add_argument("--seed", type=int, default=0, help="random seed: different seeds give different "
                   "completions from stochastic models (MAT)")
    i.set_defaults(fn=cmd_inpaint)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
