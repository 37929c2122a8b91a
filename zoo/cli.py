"""``zoo``: list, train, split, inpaint, eval, compare, weights, publish, serve, export.

Bad input (paths, images, masks, checkpoints, model names, settings) ends with one ``error:`` line and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from zoo.errors import TrainingAborted, TrainingStopped, ZooError


def _count_parameters(name: str) -> int:
    from zoo.registry import get_preset

    if get_preset(name).num_params is not None:
        return get_preset(name).num_params
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
        fixed = [flag for flag, value in (("--model", args.model), ("--data", args.data), ("--size", args.size),
                                          ("--batch-size", args.batch_size), ("--width", args.width),
                                          ("--out", args.out), ("--init-from", args.init_from),
                                          ("--config", args.config), ("--set", args.set), ("--seed", args.seed))
                 if value not in (None, [])]
        if fixed:
            raise ZooError(f"--resume continues a run with its own settings; {fixed[0]} cannot change them (only "
                           "--max-steps, --workers and --tracker can)")
        overrides = {k: v for k, v in dict(max_steps=args.max_steps, workers=args.workers,
                                           tracker=args.tracker).items() if v is not None}
        run_dir = train(resume=args.resume, **overrides)
    else:
        flags = dict(data=args.data, size=args.size, batch_size=args.batch_size, max_steps=args.max_steps,
                     out=args.out, seed=args.seed, workers=args.workers, tracker=args.tracker,
                     init_from=args.init_from, cpu=args.cpu or None, compile=args.compile or None)
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

    for flag, value in (("--val", args.val), ("--test", args.test)):
        if not 0 <= value < 1:
            raise ZooError(f"{flag} must be a fraction in [0, 1), got {value}")
    if args.val + args.test >= 1:
        raise ZooError(f"--val {args.val} + --test {args.test} leave no training images; their sum must be below 1")
    if args.seed < 0:
        raise ZooError(f"--seed must be >= 0, got {args.seed}")
    if not args.out.endswith(".json"):
        raise ZooError(f"--out {args.out}: a split manifest is a .json file (--data recognises it by that)")
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

    accepted = getattr(model, "zoo_inputs", None) or inspect.signature(model.forward).parameters
    if "sketch" not in accepted:
        raise ZooError(f"model {model.zoo_name} takes no sketch (sketch-guided models: mhtma_sketch)")
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
    from data.masks import check_mask_for_image, read_mask_file
    from zoo.api import inpaint, load

    try:
        image = load_image(args.image)
    except OSError as exc:
        raise ZooError(f"cannot read image {args.image}: {exc.__class__.__name__}") from None
    mask = read_mask_file(args.mask, hole_value=args.hole)
    warning = check_mask_for_image(mask, image.shape[:2], args.mask, args.image, hole=args.hole)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    model = _onnx_model(args, device) if args.onnx else load(_required_model(args), args.checkpoint, device=device)
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


def _required_model(args) -> str:
    if not args.model:
        raise ZooError("give --model NAME (or --onnx FILE, an exported model)")
    return args.model


def _onnx_model(args, device):
    """``--onnx FILE``: an exported model run by onnxruntime; ``--model``, if given, must be its preset."""
    from zoo.export import OnnxGenerator

    if args.checkpoint:
        raise ZooError("--onnx runs the weights inside the exported file: drop --checkpoint")
    model = OnnxGenerator(args.onnx, device=device)
    if args.model and args.model != model.zoo_name:
        raise ZooError(f"{args.onnx} is an export of {model.zoo_name}, not {args.model}")
    return model


def cmd_export(args) -> int:
    import ast

    from zoo.export import export_model
    from zoo.registry import get_preset

    preset = get_preset(args.model)
    if args.weights and args.checkpoint:
        raise ZooError("give --weights or --checkpoint, not both")
    size = args.size or [preset.native_size]
    if len(size) > 2:
        raise ZooError(f"--size takes H [W], got {len(size)} numbers")
    height, width = size[0], size[-1]
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ZooError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value
    if args.width is not None:
        overrides[preset.width_arg] = args.width
    meta = export_model(args.model, args.format, (height, width), args.out, dynamic=args.dynamic,
                        checkpoint=args.weights or args.checkpoint, overrides=overrides, opset=args.opset,
                        log=lambda line: print(line, file=sys.stderr))
    size_mb = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out}: {args.model} as {args.format} ({meta['exporter']}), {meta['size_rule']}, "
          f"{size_mb:.1f} MiB, {meta['export_seconds']} s")
    return 0


def _evaluate(args, entries):
    import torch

    from trainers.evaluation import evaluate
    from trainers.metrics import ALL_METRICS

    metrics = ALL_METRICS if args.metrics is None else tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    return evaluate(entries, data=args.data, split=args.split, masks=args.masks, size=args.size, pairs=args.pairs,
                    seed=args.seed, batch_size=args.batch_size, device=device, metrics=metrics,
                    inception_weights=args.inception_weights, lpips_weights=args.lpips_weights,
                    lpips_net=args.lpips_net, examples=args.examples, hole=args.hole)


def cmd_eval(args) -> int:
    from trainers.evaluation import Entry, default_out, eval_markdown, write_eval

    if args.onnx:
        from zoo.export import read_metadata

        if args.checkpoint:
            raise ZooError("--onnx scores the weights inside the exported file: drop --checkpoint")
        preset = read_metadata(args.onnx)["preset"]  # a one-line error unless it is a zoo export
        if args.model and args.model != preset:
            raise ZooError(f"{args.onnx} is an export of {preset}, not {args.model}")
        entry = Entry(preset, onnx=args.onnx, label=f"{preset}-onnx")
    else:
        entry = Entry(_required_model(args), args.checkpoint, width=args.width)
    ev = _evaluate(args, [entry])
    out = write_eval(ev, args.out or default_out("eval", f"{entry.label}-{args.masks}-{args.size}"))
    print(eval_markdown(ev, entry.label))
    print(f"wrote {out}")
    return 0


def cmd_compare(args) -> int:
    from trainers.evaluation import default_out, leaderboard_markdown, parse_entry, write_compare

    ev = _evaluate(args, [parse_entry(text) for text in args.model])
    out = write_compare(ev, args.out or default_out("compare", f"{args.masks}-{args.size}"))
    print(leaderboard_markdown(ev).split("\n## By hole ratio")[0])
    print(f"wrote {out}")
    return 0


def _human_size(n) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024


def _weight_keys(args):
    from zoo.hub import all_entries, find_entry

    entries = {key: (name, entry) for key, name, entry in all_entries()}
    if getattr(args, "all", False) or not args.tags:
        return list(entries.items())
    chosen = []
    for tag in args.tags:
        name, entry = find_entry(tag)
        chosen.append((f"{name}.{entry.tag}", (name, entry)))
    return chosen


def cmd_weights(args) -> int:
    """The table of released weights: tag, model, data, resolution, size, licence, hash, sources, cached."""
    from zoo.download import read_sidecar
    from zoo.hub import all_entries, cache_root, cached_file

    rows = [("tag", "model", "data", "res", "size", "license", "hash", "source", "cached")]
    for key, name, entry in all_entries():
        path = cached_file(key, entry)
        record = read_sidecar(path) if path.is_file() else None
        size = entry.size or (record or {}).get("size")
        rows.append((key, name, entry.data, str(entry.resolution or "?"), _human_size(size),
                     entry.license.split(" (")[0], entry.hash_kind if entry.hash else "none",
                     entry.source_kinds(), ("yes" if path.is_file() else "no") +
                     ("" if entry.loadable else " (not loadable)")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"cache: {cache_root()}  (ZOO_CACHE / --cache-dir)")
    return 0


def cmd_weights_download(args) -> int:
    from zoo.hub import resolve_entry

    if not args.tags and not args.all:
        raise ZooError("name the weights to download (zoo weights download mat.places512 ...) or pass --all")
    failed = 0
    for key, (_name, entry) in _weight_keys(args):
        if args.all and not entry.sources:
            print(f"skip {key}: manual download from {entry.origin}")
            continue
        try:
            print(f"{key}: {resolve_entry(key, entry)}")
        except ZooError as exc:
            if not args.all:
                raise
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    return 2 if failed else 0


def cmd_weights_verify(args) -> int:
    """Re-hash every cached file (or the named ones); mismatches are moved to the quarantine folder."""
    from zoo.download import read_sidecar
    from zoo.hub import cached_file, cached_ok, quarantine

    checked = bad = 0
    for key, (_name, entry) in _weight_keys(args):
        path = cached_file(key, entry)
        if not path.is_file():
            if args.tags:
                print(f"{key}: not cached ({path})")
            continue
        checked += 1
        if read_sidecar(path) is None and entry.hash is None:
            print(f"{key}: no record and no published hash to check against; it is recorded on its next load")
            continue
        if cached_ok(path, entry.hash, entry.hash_kind, entry.size, full=True) or (
                read_sidecar(path) is None and _published_hash_ok(path, entry)):
            print(f"{key}: ok")
        else:
            bad += 1
            print(f"{key}: MISMATCH, moved to {quarantine(path)}")
    print(f"verified {checked} cached file(s), {bad} mismatch(es)")
    return 1 if bad else 0


def _published_hash_ok(path, entry) -> bool:
    from zoo.download import digests, hash_matches

    return hash_matches(digests(path, ("md5",) if entry.hash_kind == "md5" else ()), entry.hash, entry.hash_kind)


def cmd_weights_path(args) -> int:
    from zoo.hub import cached_file, find_entry

    name, entry = find_entry(args.tag)
    print(cached_file(f"{name}.{entry.tag}", entry))
    return 0


def cmd_publish(args) -> int:
    from zoo.hub import publish

    out = publish(args.run, args.out, push=args.push, eval_dir=args.eval)
    print(f"wrote {out}" + (f" and uploaded it to {args.push}" if args.push else ""))
    return 0


def cmd_serve(args) -> int:
    import ipaddress
    import socket

    import torch
    import uvicorn

    from zoo.serve.app import create_app
    from zoo.serve.inputs import Limits
    from zoo.serve.models import load_served_models

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"warning: --host {args.host} serves every machine that can reach it; the page and API have no "
              "login (the default 127.0.0.1 serves only this machine)", file=sys.stderr)
    if args.max_upload_mb <= 0 or args.max_side < 1 or args.queue_size < 1:
        raise ZooError("--max-upload-mb, --max-side and --queue-size must be positive")
    if args.threads is not None:
        if args.threads < 1:
            raise ZooError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = load_served_models(args.model, device=device)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_side=args.max_side,
                    queue_size=args.queue_size)
    app = create_app(models, limits, device=device)
    try:  # bound here, so --port 0 can pick a free port and say which
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.create_server((args.host, args.port), family=family)
    except OSError as exc:
        raise ZooError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {', '.join(models)} on {device} at http://{shown}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level=args.log_level)).run(sockets=[sock])
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, like every other bad input (argparse would print the usage first)
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoo", description="GAN inpainting model zoo")
    parser.add_argument("--cache-dir", metavar="DIR", help="weights cache (default $ZOO_CACHE or "
                        "~/.cache/inpaint-zoo)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    t.add_argument("--init-from", metavar="SOURCE", help="fine-tune: G (EMA when present) and D from a path, "
                   "weights tag (mat.places512), hf-hub:ORG/REPO or local-dir:DIR; --set init.discriminator=false, "
                   "--set freeze=[PREFIX], --set init.optimizers=true")
    t.add_argument("--config", metavar="FILE.yaml", help="settings file, e.g. a run's config.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. recipe.optim_g.lr=2e-4 (repeatable)")
    t.add_argument("--seed", type=int)
    t.add_argument("--workers", type=int, help="data-loader workers per process")
    t.add_argument("--tracker", choices=["wandb", "tensorboard", "none"], help="default wandb (offline "
                   "without a key)")
    t.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    t.add_argument("--compile", action="store_true", help="torch.compile G and D (setting compile; compiling "
                   "takes minutes before the first step)")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("split", help="write train/val/test manifests with checksums")
    s.add_argument("--data", required=True, help="image folder or list file")
    s.add_argument("--out", required=True, help="manifest path (.json)")
    s.add_argument("--val", type=float, default=0.05)
    s.add_argument("--test", type=float, default=0.05)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_split)

    i = sub.add_parser("inpaint", help="fill the holes of one image")
    i.add_argument("--model", help="registered model name (optional with --onnx)")
    i.add_argument("--weights", "--checkpoint", dest="checkpoint", metavar="SOURCE", help="path (run, checkpoint, "
                   "official file), weights tag (mat.places512, see `zoo weights`), hf-hub:ORG/REPO or local-dir:DIR")
    i.add_argument("--onnx", metavar="FILE", help="run an exported ONNX file (zoo export) with onnxruntime")
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
    e.add_argument("--model", help="registered model, or a baseline: opencv_telea, opencv_ns, mean_fill")
    e.add_argument("--weights", "--checkpoint", dest="checkpoint", metavar="SOURCE", help="zoo checkpoint (file or "
                   "run directory), official weights, weights tag, hf-hub:ORG/REPO or local-dir:DIR")
    e.add_argument("--onnx", metavar="FILE", help="score an exported ONNX file (zoo export) run by onnxruntime")
    e.add_argument("--width", type=int, help="base width (cnum / dim) when the checkpoint does not record it")
    e.add_argument("--out", help="output folder (default runs/eval-MODEL-MASKS-SIZE-TIMESTAMP)")
    _evaluation_flags(e)
    e.set_defaults(fn=cmd_eval)

    x = sub.add_parser("export", help="export a model to ONNX or TorchScript (composited output, zoo metadata)")
    x.add_argument("--model", required=True, help="registered model name (see `zoo list`)")
    source = x.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="SOURCE", help="weights to export (anything zoo.load takes)")
    source.add_argument("--checkpoint", metavar="PATH", help="zoo checkpoint or official weights file")
    x.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    x.add_argument("--size", type=int, nargs="+", metavar="N", help="H [W] of the exported graph (default: the "
                   "model's native size); with --dynamic, the example size")
    x.add_argument("--dynamic", action="store_true", help="free height and width (multiples of the model's size "
                   "multiple) where the architecture allows it")
    x.add_argument("--width", type=int, help="base width (cnum / dim) when the checkpoint does not record it")
    x.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="generator argument, "
                   "e.g. resolution=64 (repeatable)")
    x.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; at least 17)")
    x.add_argument("--out", required=True, metavar="FILE")
    x.set_defaults(fn=cmd_export)

    c = sub.add_parser("compare", help="score several models on the same pairs: leaderboard, plot, image grid")
    c.add_argument("--model", required=True, action="extend", nargs="+", metavar="ENTRY",
                   help="NAME[,weights=SOURCE][,label=TEXT][,width=W] (repeatable), e.g. "
                   "deepfill_v2,checkpoint=runs/a opencv_telea opencv_ns")
    c.add_argument("--out", help="output folder (default runs/compare-MASKS-SIZE-TIMESTAMP)")
    _evaluation_flags(c)
    c.set_defaults(fn=cmd_compare)

    w = sub.add_parser("weights", help="released weights: table, download, verify, path")
    w.set_defaults(fn=cmd_weights)
    wsub = w.add_subparsers(dest="weights_command")
    wd = wsub.add_parser("download", help="fetch and verify weights into the cache")
    wd.add_argument("tags", nargs="*", metavar="TAG", help="PRESET.TAG, e.g. mat.places512")
    wd.add_argument("--all", action="store_true", help="every release that has a download source")
    wd.set_defaults(fn=cmd_weights_download)
    wv = wsub.add_parser("verify", help="re-hash cached files; move mismatches to the quarantine folder")
    wv.add_argument("tags", nargs="*", metavar="TAG")
    wv.set_defaults(fn=cmd_weights_verify)
    wp = wsub.add_parser("path", help="where the cache keeps (or would keep) a release")
    wp.add_argument("tag", metavar="TAG")
    wp.set_defaults(fn=cmd_weights_path)

    pub = sub.add_parser("publish", help="write a trained run as a Hugging Face Hub folder (safetensors, card)")
    pub.add_argument("run", metavar="RUN", help="run directory (its newest checkpoint) or checkpoint file")
    pub.add_argument("--out", required=True, help="folder to write (must be empty or new)")
    pub.add_argument("--push", metavar="ORG/REPO", help="upload the folder to the Hugging Face Hub")
    pub.add_argument("--eval", metavar="DIR", help="a `zoo eval` output folder whose results go into the card")
    pub.set_defaults(fn=cmd_publish)
    v = sub.add_parser("serve", help="a web page and REST API that run several models side by side on one mask")
    v.add_argument("--model", required=True, action="append", metavar="SPEC",
                   help="PRESET[=SOURCE][,checkpoint=SOURCE][,label=NAME][,width=W][,tiny] (repeatable), e.g. "
                   "deepfill_v2 (random weights), mat=mat.places512, mhtma,checkpoint=runs/x")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    v.add_argument("--port", type=int, default=8080, help="port (0: any free port; the line printed says which)")
    v.add_argument("--device", help="cpu, cuda, cuda:1, ... (default cuda when available)")
    v.add_argument("--max-upload-mb", type=float, default=20, help="largest request body (default 20 MB)")
    v.add_argument("--max-side", type=int, default=4096, help="largest image width or height (default 4096)")
    v.add_argument("--queue-size", type=int, default=32, help="requests waiting for the device before "
                   "503 + Retry-After (default 32)")
    v.add_argument("--threads", type=int, help="CPU threads per forward pass (default: torch's choice; 1 is "
                   "fastest for small models on a busy machine)")
    v.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    v.set_defaults(fn=cmd_serve)
    return parser


def main(argv=None) -> int:
    # Large CPU tensors (MAT at 512 px has many of 189 MB) come from the kernel as fresh 4 KB pages: 1.4M page
    # faults per MAT forward here, ~3 s of its ~11 s CPU time. Torch asks for 2 MB pages instead when this is set; it
    # reads it once, at its first allocation, so it is set before anything imports torch. The user's value wins.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    args = build_parser().parse_args(argv)
    if args.cache_dir:
        os.environ["ZOO_CACHE"] = str(Path(args.cache_dir).expanduser().resolve())
    if getattr(args, "cpu", False):
        # Hide GPUs before anything initialises CUDA: torch.distributed's gloo barrier would otherwise pick
        # cuda:<local rank> on a machine with fewer GPUs than CPU processes.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        return args.fn(args)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TrainingStopped, TrainingAborted) as exc:  # a signal: the last step was saved, or the save abandoned
        if str(exc):
            print(exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
