"""Official code vs the zoo: forward and forward + backward time and peak memory, same weights, same input.

    python tools/bench_official.py --root /tmp/official --families deepfill_v2_pt hint --rounds 3

``--root`` holds the official repositories, checked out outside this tree, as folders named
``deepfillv2`` (nipponjo/deepfillv2-pytorch), ``deepfillv1`` (daa233/generative-inpainting-pytorch),
``HINT`` (ChrisChen1023/HINT; needs ``einops``: ``--pythonpath`` adds its folder) and ``MAT``
(fenglinglwb/MAT). None of their code is imported by the zoo; this script loads it beside ours.

For each family a first subprocess draws random weights for the official network (seeded) and saves them
in the official file layout; every measurement then runs in its own fresh subprocess (so its peak resident
set size is its own): the official network with those weights, or ``zoo.load`` of the same file, batch 1 at
the family's size, one untimed warm-up, ``--repeats`` timed runs. Rounds interleave official and zoo runs
(A B, B A, ...) so that drifting load on a shared machine hits both alike; the table shows medians over
rounds and the zoo/official ratios. Forward: eval mode, no grad. Forward + backward: train mode, the zoo with
its training recipe's model options (HINT: activation checkpointing), backward of the mean absolute value of
every output stage. DeepFill runs without its attention-offset image (``attention_flow=False``) on both sides.
``--compile`` compiles both networks (``torch.compile``, inductor) before the warm-up run, whose time (compiling
included) the table reports separately; the timed runs are the compiled ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------
# The families: how to build and call the official network, and which zoo preset loads its file


def _randomise(module, seed, gain=2.0):
    """Random weights and small random biases (zero biases would hide bias mix-ups); see deepfill_parity."""
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * gain / fan_in**0.5 if p.dim() > 1
                    else torch.randn(p.shape, generator=g) * 0.1)


def _deepfill_v2(layout):
    def build(root):
        sys.path.insert(0, str(root / "deepfillv2"))
        from model import networks, networks_tf  # noqa: PLC0415

        module = networks_tf if layout == "tf" else networks
        return module.Generator(cnum_in=5, cnum=48, return_flow=False)

    def call(G, image, mask):
        import torch  # noqa: PLC0415

        x = image.flip(1) if layout == "tf" else image  # the TF layout takes BGR
        return G(torch.cat([x * (1 - mask), torch.ones_like(mask), mask], dim=1), mask)

    return dict(build=build, call=call, save=lambda G, path: _save({"G": G.state_dict()}, path),
                preset="deepfill_v2", size=256, randomise=_randomise)


def _deepfill_v1():
    def build(root):
        sys.path.insert(0, str(root / "deepfillv1"))
        from model.networks import Generator  # noqa: PLC0415

        return Generator({"input_dim": 3, "ngf": 32}, False, None)

    def call(G, image, mask):
        return G(image * (1 - mask), mask)[:2]

    return dict(build=build, call=call, save=lambda G, path: _save(G.state_dict(), path),
                preset="deepfill_v1", size=256, randomise=_randomise)


def _hint():
    def build(root):
        import torch  # noqa: PLC0415

        sys.path.insert(0, str(root / "HINT"))
        torch.Tensor.cuda = lambda self, *a, **k: self  # the official MPD hard-codes .cuda()
        from src.networks import HINT  # noqa: PLC0415

        return HINT(dim=48)

    def randomise(G, seed):  # default init leaves LayerNorms at identity and temperatures at 1: perturb them
        import torch  # noqa: PLC0415

        torch.manual_seed(seed)
        with torch.no_grad():
            for name, param in G.named_parameters():
                if name.endswith(("body.weight", "temperature")):
                    param.uniform_(0.5, 1.5)
                elif name.endswith("body.bias"):
                    param.uniform_(-0.2, 0.2)

    def call(G, image, mask):
        import torch.nn.functional as F  # noqa: PLC0415

        s = image.shape[-1]
        filled = (image + 1) / 2 * (1 - mask) + mask  # the official convention: [0, 1], holes white
        masks = [F.interpolate(mask, size=(s // f, s // f), mode="nearest") for f in (2, 4, 8)]
        return (G(filled, mask, *masks),)

    return dict(build=build, call=call, randomise=randomise, preset="hint", size=256,
                save=lambda G, path: _save({"iteration": 1, "generator": G.state_dict()}, path))


def _mat():
    def build(root):
        sys.path.insert(0, str(root / "MAT"))
        from networks.mat import Generator  # noqa: PLC0415

        return Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3)

    def call(G, image, mask):
        import torch  # noqa: PLC0415

        z = torch.from_numpy(__import__("numpy").random.RandomState(0).randn(1, 512)).float()
        known = 1 - mask  # the official convention: mask 1 = known
        out, stage1 = G(image * known, known, z, None, truncation_psi=1, noise_mode="const", return_stg1=True)
        return stage1, out

    return dict(build=build, call=call, save=lambda G, path: _save(G.state_dict(), path),
                preset="mat", size=512, randomise=lambda G, seed: None)  # its own init is already random


FAMILIES = {
    "deepfill_v2_pt": _deepfill_v2("pt"),
    "deepfill_v2_tf": _deepfill_v2("tf"),
    "mat": _mat(),
    "hint": _hint(),
    "deepfill_v1": _deepfill_v1(),
}


def _save(obj, path):
    import torch  # noqa: PLC0415

    torch.save(obj, path)


# ---------------------------------------------------------------------------------------------------------
# One measurement (runs in its own process)


def _inputs(size):
    import torch  # noqa: PLC0415

    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : size // 2 + 8, size // 3 : 3 * size // 4] = 1
    mask[..., 3 * size // 4 : 3 * size // 4 + 12, 8 : size // 2] = 1
    return image, mask


def child(args) -> dict:
    import torch  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    family = FAMILIES[args.family]
    root = Path(args.root).resolve()
    weights = Path(args.weights)
    if args.impl == "prepare":
        G = family["build"](root)
        family["randomise"](G, args.seed)
        family["save"](G, weights)
        return {}
    mode_train = args.mode == "fwd_bwd"
    if args.impl == "official":
        G = family["build"](root)
        G.load_state_dict(_official_state(torch.load(weights, weights_only=True)))

        def run(image, mask):
            return family["call"](G, image, mask)
    else:
        sys.path.insert(0, str(Path(args.zoo).resolve()))
        import zoo  # noqa: PLC0415

        recipe = zoo.get_preset(family["preset"]).recipe
        kwargs = dict(getattr(recipe, "train_model_kwargs", {})) if mode_train else {}  # older trees: none
        G = zoo.load(family["preset"], checkpoint=weights, **kwargs)
        if hasattr(G, "attention_flow"):
            G.attention_flow = False  # DeepFill: no offset image, as the official ports run with return_flow=False

        def run(image, mask):
            kw = {"noise_mode": "const", "truncation_psi": 1.0} if family["preset"] == "mat" else {}
            return G(image * (1 - mask), mask, **kw).stages

    image, mask = _inputs(args.size or family["size"])
    G.train(mode_train)
    if args.compile:
        G.compile()

    def once():
        if mode_train:
            sum(stage.abs().mean() for stage in run(image, mask)).backward()
            G.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                run(image, mask)

    times, first_seconds = [], None
    for i in range(args.warmup + args.repeats):
        cpu_start, start = time.process_time(), time.perf_counter()
        once()
        if i == 0:
            first_seconds = time.perf_counter() - start
        if i >= args.warmup:
            times.append((time.perf_counter() - start, time.process_time() - cpu_start))
    return {"seconds": statistics.median(t for t, _ in times), "cpu_seconds": statistics.median(c for _, c in times),
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "first_seconds": first_seconds}


def _official_state(obj):
    if isinstance(obj, dict) and "G" in obj:
        return obj["G"]
    if isinstance(obj, dict) and "generator" in obj:
        return obj["generator"]
    return obj


# ---------------------------------------------------------------------------------------------------------
# The driver


def spawn(args, family, impl, mode, weights) -> dict:
    cmd = [sys.executable, __file__, "--child", "--family", family, "--impl", impl, "--mode", mode,
           "--weights", str(weights), "--root", args.root, "--repeats", str(args.repeats),
           "--warmup", str(args.warmup), "--seed", str(args.seed), "--zoo", args.zoo]
    if args.size:
        cmd += ["--size", str(args.size)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.compile:
        cmd.append("--compile")
    env = dict(os.environ, HF_HUB_OFFLINE="1", ZOO_OFFLINE="1")
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([args.pythonpath, env.get("PYTHONPATH", "")])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"error: {family} {impl} {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder holding the official checkouts (see above)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--modes", nargs="+", default=["forward", "fwd_bwd"], choices=["forward", "fwd_bwd"])
    p.add_argument("--rounds", type=int, default=3, help="interleaved official/zoo pairs per measurement")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per process (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="input size instead of each family's native one "
                   "(e.g. 128 for HINT's forward + backward where 16 GB of memory are not free)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile both networks (the first call, "
                   "compiling included, is reported apart; --warmup must be at least 1)")
    p.add_argument("--pythonpath", help="extra import folder for the official code (e.g. where einops lives)")
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--zoo", default=str(ROOT), help="the zoo source tree to measure (default: this one; e.g. an "
                   "older commit unpacked with git archive, for before/after)")
    # internal: one measurement
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--family", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compile and args.warmup < 1:
        p.error("--compile needs --warmup 1 or more (the first call compiles)")
    if args.child:
        print(json.dumps(child(args)))
        return

    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]}, {os.cpu_count()} CPUs, THP_MEM_ALLOC_ENABLE="
              f"{os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')} on both sides", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            weights = Path(tmp) / f"{family}.pth"
            spawn(args, family, "prepare", "forward", weights)
            for mode in args.modes:
                runs = {"official": [], "zoo": []}
                for r in range(args.rounds):
                    for impl in (("official", "zoo") if r % 2 == 0 else ("zoo", "official")):
                        runs[impl].append(spawn(args, family, impl, mode, weights))
                summary = {impl: {key: statistics.median(run[key] for run in rs) for key in rs[0]}
                           for impl, rs in runs.items()}
                results[(family, mode)] = summary
                o, z = summary["official"], summary["zoo"]
                first = (f" | first call (compiling) official {o['first_seconds']:.0f} s, "
                         f"zoo {z['first_seconds']:.0f} s" if args.compile else "")
                print(f"{family:15s} {mode:8s} official {o['seconds']:7.2f} s {o['peak_mb']:7.0f} MB | zoo "
                      f"{z['seconds']:7.2f} s {z['peak_mb']:7.0f} MB | zoo/official time "
                      f"{z['seconds'] / o['seconds']:.2f}, cpu time {z['cpu_seconds'] / o['cpu_seconds']:.2f}{first}",
                      flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[:3]}")
    print("\n| family | forward zoo/official | forward+backward zoo/official | fwd+bwd memory (official -> zoo) |")
    print("|---|---|---|---|")
    for family in args.families:
        cells = []
        for mode in ("forward", "fwd_bwd"):
            s = results.get((family, mode))
            cells.append(f"{s['zoo']['seconds'] / s['official']['seconds']:.2f}" if s else "-")
        s = results.get((family, "fwd_bwd"))
        memory = f"{s['official']['peak_mb']:.0f} -> {s['zoo']['peak_mb']:.0f} MB" if s else "-"
        print(f"| {family} | {cells[0]} | {cells[1]} | {memory} |")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{f}/{m}": v for (f, m), v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
