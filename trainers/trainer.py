"""The one trainer: any registered preset, single- or multi-stage, driven only by its recipe.

Read top to bottom: set-up (models, optimisers, data, accelerate), then the loop: discriminator step(s),
generator step, EMA, log, samples, checkpoint. Everything family-specific comes from the recipe.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
import warnings
from datetime import datetime
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

import discriminators
from data.datasets import InpaintingStream, fixed_batch
from data.images import resolve_source
from losses import GeneratorLoss
from trainers.checkpoint import read_checkpoint, save_checkpoint
from trainers.config import recipe_from_dict, save_yaml
from trainers.samples import aux_scalars, sample_grid, save_grid
from trainers.steps import GANSteps
from zoo.errors import ZooError
from zoo.registry import create_model, get_preset


def check_new_run_dir(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ZooError(f"run directory {path} already exists and is not empty; use --resume {path} or another --out")
    return path


def _rng_state():
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _tracker(cfg) -> str | None:
    name = cfg["tracker"]
    if name in (None, "none", False):
        return None
    if name not in ("wandb", "tensorboard"):
        raise ZooError(f"unknown tracker {name!r}: use wandb, tensorboard or none")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ZooError("--tracker tensorboard needs TensorBoard: pip install 'inpaint-zoo[tensorboard]'") from None
    if name == "wandb" and not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")  # no key: write runs locally, `wandb sync` later
    return name


def train(cfg: dict | None = None, resume: str | None = None, **overrides) -> Path:
    """Train ``cfg['model']`` and return the run directory.

    With ``resume`` (a run directory or checkpoint file) the checkpoint's own config is used, updated by
    ``overrides`` (e.g. a larger ``max_steps``), and training continues exactly where it stopped.
    """
    checkpoint = read_checkpoint(resume) if resume else None  # read before anything is written
    if checkpoint:
        cfg = {**checkpoint["config"], **overrides}
    preset = get_preset(cfg["model"])
    recipe = recipe_from_dict(cfg["recipe"], condition=preset.recipe.condition)
    adv = recipe.adversarial

    tracker = _tracker(cfg)
    cpu = cfg["cpu"] or not torch.cuda.is_available()
    PartialState(cpu=cpu)  # process group first: the processes agree on the run directory before anything
    if checkpoint:
        run_dir = Path(checkpoint["path"]).parent.parent
    else:  # the main process names the run (a timestamp), every process checks it is free
        name = cfg["out"] or f"runs/{cfg['model']}-{datetime.now():%Y%m%d-%H%M%S}"
        run_dir = check_new_run_dir(Path(broadcast_object_list([name])[0]))
    accelerator = Accelerator(
        cpu=cpu,
        log_with=tracker,
        project_dir=str(run_dir),  # TensorBoard logs go into the run
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False,
                                                       find_unused_parameters=cfg["ddp_find_unused"])],
    )
    main = accelerator.is_main_process

    # ---- models, losses, optimisers (identical initial weights on every process) ----
    if cfg.get("deterministic"):  # bitwise-repeatable GPU kernels (slower); CPU kernels already are
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    set_seed(cfg["seed"])
    G = create_model(cfg["model"], **cfg["model_kwargs"])
    D = discriminators.create_discriminator(recipe.discriminator, image_size=cfg["size"],
                                            **recipe.discriminator_kwargs)
    if cfg["init_from"] and not checkpoint:
        from zoo.hub import load_generator_weights

        load_generator_weights(G, cfg["init_from"], cfg["model"])
    ema_beta = None
    if cfg["ema_kimg"]:
        ema_beta = 0.5 ** (cfg["batch_size"] * accelerator.num_processes / (cfg["ema_kimg"] * 1000))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if ema_beta else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gen_loss = GeneratorLoss(recipe.losses, cfg["weights_dir"], cfg["allow_random_vgg"])
    notes = [str(w.message) for w in caught]
    opt_g = torch.optim.Adam(G.parameters(), lr=recipe.optim_g.lr, betas=recipe.optim_g.betas,
                             eps=recipe.optim_g.eps, weight_decay=recipe.optim_g.weight_decay)
    opt_d = torch.optim.Adam(D.parameters(), lr=recipe.optim_d.lr, betas=recipe.optim_d.betas,
                             eps=recipe.optim_d.eps, weight_decay=recipe.optim_d.weight_decay)

    # ---- data: a deterministic stream of samples, sharded over processes by accelerate ----
    samples_needed = (cfg["max_steps"] * adv.d_steps + 1) * cfg["batch_size"] * accelerator.num_processes
    stream = InpaintingStream(resolve_source(cfg["data"], "train"), cfg["size"], cfg["masks"], cfg["mask_kwargs"],
                              seed=cfg["seed"], length=samples_needed, **cfg.get("augment_kwargs", {}))  # demo
    loader = DataLoader(stream, batch_size=cfg["batch_size"], num_workers=cfg["workers"], drop_last=True,
                        persistent_workers=cfg["workers"] > 0)
    G, D, opt_g, opt_d, loader = accelerator.prepare(G, D, opt_g, opt_d, loader)
    gen_loss.to(accelerator.device)
    if G_ema is not None:
        G_ema.to(accelerator.device)

    step, batches_done = 0, 0
    if checkpoint:
        accelerator.unwrap_model(G).load_state_dict(checkpoint["G"])
        accelerator.unwrap_model(D).load_state_dict(checkpoint["D"])
        if G_ema is not None:
            G_ema.load_state_dict(checkpoint["G_ema"])
        opt_g.load_state_dict(checkpoint["opt_g"])
        opt_d.load_state_dict(checkpoint["opt_d"])
        step, batches_done = checkpoint["step"], checkpoint["batches"]
        _set_rng_state(checkpoint["rng"][accelerator.process_index])
        loader = accelerator.skip_first_batches(loader, batches_done)
    else:
        torch.manual_seed(cfg["seed"] * 1000 + accelerator.process_index)  # per-process training randomness
    batches = iter(loader)

    preview = fixed_batch(resolve_source(cfg["data"], "val"), cfg["size"], cfg["preview_count"], cfg["masks"],
                          cfg["mask_kwargs"], seed=cfg["seed"])
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for note in notes:
            print(f"warning: {note}")
        cfg = {**cfg, "out": str(run_dir), "warnings": notes}
        save_yaml(cfg, run_dir / "config.yaml")
    if tracker:
        accelerator.init_trackers("inpaint-zoo", config=_flat(cfg),
                                  init_kwargs={"wandb": {"dir": str(run_dir), "name": run_dir.name}})
    if main:
        n_params = sum(p.numel() for p in accelerator.unwrap_model(G).parameters())
        print(f"training {cfg['model']} ({n_params:,} generator parameters) on {cfg['data'] or 'the embedded photos'}"
              f" at {cfg['size']}px, batch {cfg['batch_size']} x {accelerator.num_processes} process(es) on "
              f"{accelerator.device}; run directory {run_dir}")

    steps = GANSteps(accelerator, G, D, opt_g, opt_d, gen_loss, recipe)

    def next_batch():
        nonlocal batches_done
        batch = next(batches)
        batches_done += 1
        return batch["image"], batch["mask"], int(batch["skipped"].sum())

    def write_samples(tag):
        model = G_ema if G_ema is not None else accelerator.unwrap_model(G)
        was_training = model.training
        model.eval()
        # Same noise for every grid (MAT), without disturbing the training RNG streams (exact resume).
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            image, mask = preview["image"].to(accelerator.device), preview["mask"].to(accelerator.device)
            grid = sample_grid(image, mask, steps.generate(image, mask, model))
        model.train(was_training)
        save_grid(grid.cpu(), run_dir / "samples" / f"{tag}.png")

    def write_checkpoint():
        unwrapped_g = accelerator.unwrap_model(G)
        rng = gather_object([_rng_state()])
        fingerprints = gather_object([fingerprint(unwrapped_g, accelerator.unwrap_model(D))])
        if main:
            if len(set(fingerprints)) > 1:
                warnings.warn(f"processes disagree on the weights at step {step}: {fingerprints}", stacklevel=1)
            state = {"model": cfg["model"], "config": cfg, "step": step, "batches": batches_done, "rng": rng,
                     "process_fingerprints": fingerprints,
                     "G": unwrapped_g.state_dict(), "D": accelerator.unwrap_model(D).state_dict(),
                     "G_ema": G_ema.state_dict() if G_ema is not None else None,
                     "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
            save_checkpoint(state, run_dir, step, keep=cfg["keep_checkpoints"])
        accelerator.wait_for_everyone()

    # ---- the loop ----
    G.train()
    D.train()
    metrics_file = open(run_dir / "metrics.jsonl", "a") if main else None
    progress = tqdm(total=cfg["max_steps"], initial=step, disable=not main, desc=cfg["model"], unit="step",
                    dynamic_ncols=True)
    skipped_total, d_updates, started = 0, step * adv.d_steps, time.perf_counter()
    while step < cfg["max_steps"]:
        adversarial = bool(adv.weight) and step >= adv.warmup_steps  # demo: reconstruction warm-up first
        # discriminator: extra critic updates on fresh batches (WGAN-GP recipes), then one on this batch
        for _ in range(adv.d_steps - 1 if adversarial else 0):
            image, mask, skipped = next_batch()
            with torch.no_grad():
                out = steps.generate(image, mask)
            steps.discriminator(image, mask, out, d_updates)
            d_updates += 1
            skipped_total += skipped
        image, mask, skipped = next_batch()
        skipped_total += skipped
        out = steps.generate(image, mask)
        stats = steps.discriminator(image, mask, out, d_updates) if adversarial else {}
        d_updates += 1
        # generator
        stats.update(steps.generator(image, mask, out, adversarial=adversarial))
        if G_ema is not None:
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), accelerator.unwrap_model(G).parameters()):
                    p_ema.lerp_(p.detach(), 1 - ema_beta)
                for b_ema, b in zip(G_ema.buffers(), accelerator.unwrap_model(G).buffers()):
                    b_ema.copy_(b)
        step += 1
        progress.update()

        if step % cfg["log_every"] == 0 or step == cfg["max_steps"]:
            stats = {k: float(v) for k, v in stats.items()}
            if not all(math.isfinite(v) for v in stats.values()):
                raise ZooError(f"training diverged at step {step}: {stats}")
            stats.update(aux_scalars(out))
            stats.update({"step": step, "data/skipped_images": skipped_total,
                          "time/sec_per_step": (time.perf_counter() - started) / cfg["log_every"]})
            started = time.perf_counter()
            accelerator.log(stats, step=step)
            if main:
                metrics_file.write(json.dumps(stats) + "\n")
                metrics_file.flush()
                progress.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in stats.items()
                                      if k in ("G/loss", "D/loss")})
        if main and (step % cfg["sample_every"] == 0 or step == cfg["max_steps"]):
            write_samples(f"step_{step:07d}")
        if step % cfg["save_every"] == 0 or step == cfg["max_steps"]:
            write_checkpoint()
    progress.close()
    if main:
        metrics_file.close()
        if skipped_total:
            print(f"warning: {skipped_total} unreadable image(s) were skipped; see the warnings above")
    accelerator.end_training()
    return run_dir


def fingerprint(*models) -> str:
    """SHA-1 of every parameter and buffer: equal on all processes when data-parallel training is in sync."""
    digest = hashlib.sha1()
    for model in models:
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _flat(cfg, prefix=""):
    """Flatten nested settings for trackers that want scalars."""
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = json.dumps(value, default=str)
        else:
            flat[f"{prefix}{key}"] = value
    return flat
