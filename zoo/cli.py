"""``zoo``: list, train, split, inpaint, eval, compare.

Bad input (paths, images, masks, checkpoints, model names, settings) ends with one ``error:`` line and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
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
                     preset.recipe.discriminator, str(preset.native_size), preset.paper))
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
    if int(os.environ.get("RANK", "0")) == 0:  # runs on the embedded photos end with where they stand
        import torch

        from trainers.demo_report import heldout_table

        table = heldout_table(Path(run_dir), device="cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
        if table:
            print(table)
    return 0


def cmd_split(args) -> int:
    from data.images import write_split

    manifest = write_split(args.data, args.out, val=args.val, test=args.test, seed=args.seed)
    counts = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
    print(f"wrote {args.out}: {counts}")
    return 0


def _sketch_conditioning(args, size, model) -> dict:
    """``--sketch``: a line drawing (lines = the minority colour) for sketch-guided models, thinned to 1 px."""
    if not args.sketch:
        return {}
    import inspect

    from data.masks import read_mask_file
    from zoo.mhtma import sketch_from_drawing

    if "sketch" not in inspect.signature(model.forward).parameters:
        raise ZooError(f"model {args.model} takes no sketch (sketch-guided models: mhtma_sketch)")
    drawing = read_mask_file(args.sketch)
    if drawing.shape != size:
        raise ZooError(f"sketch {args.sketch} is {drawing.shape[1]}x{drawing.shape[0]} but image {args.image} is "
                       f"{size[1]}x{size[0]}")
    if drawing.mean() > 0.5:  # dark lines on white paper: the lines are the minority colour either way
        drawing = 1 - drawing
    return {"sketch": sketch_from_drawing(drawing)[None, None]}


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
    hole_ratio = float(mask.mean())
    if hole_ratio in (0.0, 1.0):
        raise ZooError(f"mask {args.mask} marks {'no' if hole_ratio == 0 else 'every'} pixel as hole "
                       f"(holes are {args.hole} with --hole {args.hole}; is the polarity inverted?)")
    if hole_ratio > 0.75:
        print(f"warning: the mask covers {hole_ratio:.0%} of the image; if holes are black use --hole black",
              file=sys.stderr)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    model = load(args.model, args.checkpoint, device=device)
    if args.variants < 1:
        raise ZooError("--variants must be at least 1")
    conditioning = _sketch_conditioning(args, image.shape[:2], model)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(args.variants):  # stochastic generators (MAT's latent): one seed, one variant
        torch.manual_seed(args.seed + k)
        result = inpaint(model, to_tensor(image)[None], torch.from_numpy(mask)[None, None], **conditioning)
        pixels = ((result[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        path = out_path if args.variants == 1 else out_path.with_name(f"{out_path.stem}_{k}{out_path.suffix}")
        Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        print(f"wrote {path}")
    return 0


def _evaluate(args, entries):
    import torch

    from trainers.evaluate import evaluate
    from trainers.metrics import ALL_METRICS

    metrics = ALL_METRICS if args.metrics is None else tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    return evaluate(entries, data=args.data, split=args.split, masks=args.masks, size=args.size, pairs=args.pairs,
                    seed=args.seed, batch_size=args.batch_size, device=device, metrics=metrics,
                    inception_weights=args.inception_weights, lpips_weights=args.lpips_weights,
                    lpips_net=args.lpips_net, examples=args.examples, hole=args.hole)


def cmd_eval(args) -> int:
    from trainers.evaluate import Entry, default_out, eval_markdown, write_eval

    entry = Entry(args.model, args.checkpoint, width=args.width)
    ev = _evaluate(args, [entry])
    out = write_eval(ev, args.out or default_out("eval", f"{entry.label}-{args.masks}-{args.size}"))
    print(eval_markdown(ev, entry.label))
    print(f"wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from trainers.evaluate import default_out, leaderboard_markdown, parse_entry, write_compare

    ev = _evaluate(args, [parse_entry(text) for text in args.model])
    out = write_compare(ev, args.out or default_out("compare", f"{args.masks}-{args.size}"))
    print(leaderboard_markdown(ev).split("\n## By hole ratio")[0])
    print(f"wrote {out}")
    return 0


def _evaluation_flags(p) -> None:
    p.add_argument("--data", help="image folder, list file or split manifest (default: the embedded photos)")
    p.add_argument("--split", default="test", help="split of a manifest to score (default test)")
    p.add_argument("--masks", default="liu", help="protocol (liu, lama_thin, lama_medium, lama_thick, mat_small, "
                   "mat_large), a folder of mask images, or a mask set written by tools/make_mask_set.py")
    p.add_argument("--hole", choices=["white", "black"], default="white", help="colour of holes in mask files")
    p.add_argument("--size", type=int, default=256, help="evaluation resolution (square centre crops)")
    p.add_argument("--pairs", type=int, help="number of (image, mask) pairs (default: one per image; 12 on the "
                   "embedded photos); with fewer images each serves a block of pairs, masks repeat cyclically")
    p.add_argument("--seed", type=int, default=0, help="mask-set seed and model noise seed")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--metrics", help="comma-separated subset of l1,l1_hole,psnr,psnr_hole,ssim,ssim_hole,ms_ssim,"
                   "lpips,lpips_hole,fid,kid,p_ids,u_ids (default: all)")
    p.add_argument("--inception-weights", metavar="PATH", help="FID Inception-v3 weights "
                   "(weights-inception-2015-12-05-6726825d.pth; default: the torch hub cache)")
    p.add_argument("--lpips-weights", metavar="PATH", help="LPIPS backbone weights (torchvision file, e.g. "
                   "alexnet-owt-7be5be79.pth; default: the torch hub cache)")
    p.add_argument("--lpips-net", choices=["alex", "vgg", "squeeze"], default="alex")
    p.add_argument("--examples", type=int, default=4, help="example pairs per bucket in the image grids")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU even if a GPU is present")


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
    i.add_argument("--sketch", help="line drawing, same size, for sketch-guided models (mhtma_sketch); "
                   "lines inside the hole guide the fill")
    i.add_argument("--out", required=True)
    i.add_argument("--cpu", action="store_true")
    i.add_argument("--variants", type=int, default=1, help="write N completions with seeds seed, seed+1, ... "
                   "(OUT_0.png, OUT_1.png, ...): different for stochastic models such as MAT")
    i.add_argument("--seed", type=int, default=0, help="random seed: different seeds give different "
                   "completions from stochastic models (MAT)")
    i.set_defaults(fn=cmd_inpaint)

    e = sub.add_parser("eval", help="score one model (or baseline) on a fixed mask set, per hole-ratio bucket")
    e.add_argument("--model", required=True, help="registered model, or a baseline: opencv_telea, opencv_ns, mean_fill")
    e.add_argument("--checkpoint", help="zoo checkpoint (file or run directory) or official weights")
    e.add_argument("--width", type=int, help="base width (cnum / dim) when the checkpoint does not record it")
    e.add_argument("--out", help="output folder (default runs/eval-MODEL-MASKS-SIZE-TIMESTAMP)")
    _evaluation_flags(e)
    e.set_defaults(fn=cmd_eval)

    c = sub.add_parser("compare", help="score several models on the same pairs: leaderboard, plot, image grid")
    c.add_argument("--model", required=True, action="extend", nargs="+", metavar="ENTRY",
                   help="NAME[,checkpoint=PATH][,label=TEXT][,width=W] (repeatable), e.g. "
                   "deepfill_v2,checkpoint=runs/a opencv_telea opencv_ns")
    c.add_argument("--out", help="output folder (default runs/compare-MASKS-SIZE-TIMESTAMP)")
    _evaluation_flags(c)
    c.set_defaults(fn=cmd_compare)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "cpu", False):
        # Hide GPUs before anything initialises CUDA: torch.distributed's gloo barrier would otherwise pick
        # cuda:<local rank> on a machine with fewer GPUs than CPU processes.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
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
