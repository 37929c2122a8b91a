"""The one trainer: any registered preset, single- or multi-stage, driven only by its recipe.

Read top to bottom: check the settings and claim the run directory (nothing is written before both), set-up
(models, optimisers, data, accelerate), then the loop: discriminator step(s), generator step, EMA, log,
samples, checkpoint. Everything family-specific comes from the recipe.

SIGTERM / SIGINT (cluster preemption, Ctrl-C) finish the step in progress, save it and stop with exit status
143 / 130; every process stops at the same step. A second signal abandons at once.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import hashlib
import json
import math
import os
import random
import signal
import threading
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
from trainers.checkpoint import (
    CONFIG,
    RunDirectory,
    check_free_space,
    checkpoint_path,
    list_checkpoints,
    read_checkpoint,
    save_checkpoint,
)
from trainers.config import check_config, load_yaml, migrate, preflight, save_yaml, training_recipe
from trainers.samples import aux_scalars, sample_grid, save_grid
from trainers.steps import GANSteps, learning_rate, set_learning_rate
from zoo.errors import CheckpointError, DiskFullError, TrainingAborted, TrainingStopped, ZooError
from zoo.hub import init_from
from zoo.registry import create_model


def train(cfg: dict | None = None, resume: str | None = None, **overrides) -> Path:
    """Train ``cfg['model']`` and return the run directory.

    With ``resume`` (a run directory or checkpoint file) the run's own config is used, updated by
    ``overrides`` (e.g. a larger ``max_steps``), and training continues exactly where it stopped (from step
    0 when the run was killed before its first checkpoint).
    """
    cfg, checkpoint = load_run(cfg, resume, overrides)  # reads and checks everything; writes nothing
    recipe = training_recipe(cfg)
    adv = recipe.adversarial
    train_images, val_images = resolve_source(cfg["data"], "train"), resolve_source(cfg["data"], "val")
    tracker = _tracker(cfg)
    cpu = cfg["cpu"] or not torch.cuda.is_available()
    processes = PartialState(cpu=cpu)  # process group first: the processes agree on the run directory
    run = claim_run_directory(cfg, resume, processes.is_main_process)
    signals = StopSignals(relayed=processes.num_processes > 1)
    run_dir = run.path
    cfg = {**cfg, "out": str(run_dir)}
    accelerator = metrics_file = None
    try:
        accelerator = Accelerator(
            cpu=cpu,
            log_with=tracker,
            project_dir=str(run_dir),  # TensorBoard logs go into the run
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False,
                                                           find_unused_parameters=cfg["ddp_find_unused"])],
        )
        main = accelerator.is_main_process

        # ---- models, losses, optimisers (identical initial weights on every process) ----
        if cfg["deterministic"]:  # bitwise-repeatable GPU kernels (slower); CPU kernels already are
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        set_seed(cfg["seed"])
        G, D = build_networks(cfg, recipe)
        # --init-from: G (its EMA when present) and D from another checkpoint or released file (zoo.hub)
        init = None
        if cfg["init_from"] and not checkpoint:
            init = init_from(G, D, cfg["init_from"], dict(model=cfg["model"], init=cfg["init"], freeze=cfg["freeze"]))
        ema = EMA.for_run(G, recipe.ema_kimg, recipe.batch_size * accelerator.num_processes)
        if cfg["compile"]:  # in place: the modules, their parameters and state-dict names stay the same
            backend = cfg["compile"] if isinstance(cfg["compile"], str) else "inductor"  # or e.g. aot_eager
            G.compile(backend=backend)
            D.compile(backend=backend)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gen_loss = GeneratorLoss(recipe.losses, cfg["weights_dir"], cfg["allow_random_vgg"])
        notes = [str(w.message) for w in caught]
        opt_g, opt_d = adam(G, recipe.optim_g), adam(D, recipe.optim_d)
        if init and init.get("optimizer_states"):  # --set init.optimizers=true from a zoo checkpoint
            for opt, state in zip((opt_g, opt_d), init.pop("optimizer_states")):
                opt.load_state_dict(state)

        # ---- data: a deterministic stream of samples, sharded over processes by accelerate ----
        samples_needed = (cfg["max_steps"] * adv.d_steps + 1) * recipe.batch_size * accelerator.num_processes
        stream = InpaintingStream(train_images, cfg["size"], recipe.masks, recipe.mask_kwargs, seed=cfg["seed"],
                                  length=samples_needed, **cfg["augment_kwargs"])
        loader = DataLoader(stream, batch_size=recipe.batch_size, num_workers=cfg["workers"], drop_last=True,
                            persistent_workers=cfg["workers"] > 0, worker_init_fn=_worker_dies_with_parent)
        G, D, opt_g, opt_d, loader = accelerator.prepare(G, D, opt_g, opt_d, loader)
        gen_loss.to(accelerator.device)
        ema.to(accelerator.device)
        if checkpoint:
            step, batches_done, loader = restore(checkpoint, accelerator, G, D, ema, opt_g, opt_d, loader)
        else:
            step, batches_done = 0, 0
            torch.manual_seed(cfg["seed"] * 1000 + accelerator.process_index)  # per-process training randomness
        batches = iter(loader)
        preview = fixed_batch(val_images, cfg["size"], cfg["preview_count"], recipe.masks, recipe.mask_kwargs,
                              seed=cfg["seed"])
        if main:
            for note in notes:
                print(f"warning: {note}")
            cfg = {**cfg, "warnings": notes, **({"initialised_from": init} if init else {})}
            if init:
                print(init["summary"])
            save_yaml(cfg, run_dir / CONFIG)
            metrics_file = open_metrics(run_dir, step)
        if tracker:
            accelerator.init_trackers("inpaint-zoo", config=_flat(cfg),
                                      init_kwargs={"wandb": {"dir": str(run_dir), "name": run_dir.name}})
        if main:
            n_params = sum(p.numel() for p in accelerator.unwrap_model(G).parameters())
            print(f"training {cfg['model']} ({n_params:,} generator parameters) on "
                  f"{cfg['data'] or 'the embedded photos'} at {cfg['size']}px, batch {recipe.batch_size} x "
                  f"{accelerator.num_processes} process(es) on {accelerator.device}; run directory {run_dir}")
    except BaseException:
        if metrics_file is not None:
            metrics_file.close()
        run.release(undo_claim=not resume)  # nothing trained: leave no half-made run
        signals.restore()
        if accelerator is not None:
            accelerator.end_training()
        raise

    steps = GANSteps(accelerator, G, D, opt_g, opt_d, gen_loss, recipe)

    def next_batch():
        nonlocal batches_done
        batch = next(batches)
        batches_done += 1
        return batch["image"], batch["mask"], int(batch["skipped"].sum())

    def write_samples(tag):
        model = ema.model if ema else accelerator.unwrap_model(G)
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

    def write_checkpoint() -> Path | None:
        unwrapped_g = accelerator.unwrap_model(G)
        rng = gather_object([_rng_state()])
        fingerprints = gather_object([fingerprint(unwrapped_g, accelerator.unwrap_model(D))])
        path, error = None, None
        if main:
            if len(set(fingerprints)) > 1:
                warnings.warn(f"processes disagree on the weights at step {step}: {fingerprints}", stacklevel=1)
            state = {"model": cfg["model"], "config": cfg, "step": step, "batches": batches_done, "rng": rng,
                     "process_fingerprints": fingerprints,
                     "G": unwrapped_g.state_dict(), "D": accelerator.unwrap_model(D).state_dict(),
                     "G_ema": ema.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
            try:
                path = save_checkpoint(state, run_dir, step, keep=cfg["keep_checkpoints"])
            except ZooError as exc:  # e.g. a full disk: every process stops with the same line
                error = exc
        error = broadcast_object_list([error])[0] if accelerator.num_processes > 1 else error
        if error is not None:
            raise error
        return path

    # ---- the loop ----
    G.train()
    D.train()
    progress = tqdm(total=cfg["max_steps"], initial=step, disable=not main, desc=cfg["model"], unit="step",
                    dynamic_ncols=True)
    skipped_total, d_updates, started = 0, step * adv.d_steps, time.perf_counter()
    try:
        while step < cfg["max_steps"]:
            adversarial = bool(adv.weight) and step >= adv.warmup_steps  # a reconstruction-only warm-up first
            set_learning_rate(opt_g, learning_rate(recipe.optim_g, step, cfg["max_steps"]))
            set_learning_rate(opt_d, learning_rate(recipe.optim_d, step, cfg["max_steps"]))
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
            ema.update(accelerator.unwrap_model(G))
            step += 1
            progress.update()

            if step % cfg["log_every"] == 0 or step == cfg["max_steps"]:
                stats = {k: float(v) for k, v in stats.items()}
                if not all(math.isfinite(v) for v in stats.values()):
                    raise ZooError(f"training diverged at step {step}: {stats}")
                stats.update(aux_scalars(out))
                stats.update({"step": step, "data/skipped_images": skipped_total, "lr/G": opt_g.param_groups[0]["lr"],
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
            stop = signals.agreed(accelerator)  # the same on every process: all stop after this step
            if step % cfg["save_every"] == 0 or step == cfg["max_steps"] or stop:
                signals.saving = True
                path = write_checkpoint()
                signals.saving = False
            if stop:  # the main process says where; the others stop quietly
                raise TrainingStopped(f"stopped by {signal.Signals(stop).name} after step {step}: saved {path}; "
                                      f"continue with zoo train --resume {run_dir}" if main else "", stop)
    except OSError as exc:  # metrics, sample grids
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left on device in {run_dir} at step {step}") from None
        raise
    finally:
        progress.close()
        if metrics_file is not None:
            metrics_file.close()
        accelerator.end_training()  # closes the trackers
        run.release()
        signals.restore()
    if main and skipped_total:
        print(f"warning: {skipped_total} unreadable image(s) were skipped; see the warnings above")
    return run_dir


# ---- before set-up: the config and the run directory --------------------------------------------------------

def load_run(cfg, resume, overrides) -> tuple[dict, dict | None]:
    """The checked config of a new run, or of the run to resume and its newest checkpoint (None when the run
    was killed before its first checkpoint: it restarts from step 0 with its saved config)."""
    checkpoint = None
    if resume:
        folder = Path(resume)
        if folder.is_dir() and (folder / CONFIG).is_file() and not list_checkpoints(folder):
            cfg = {**migrate(load_yaml(folder / CONFIG)), "out": str(folder)}
        else:
            checkpoint = read_checkpoint(resume)
            cfg = {**migrate(checkpoint["config"]), "out": str(Path(checkpoint["path"]).parent.parent)}
        cfg = {key: value for key, value in cfg.items() if key != "warnings"}
        cfg.update(overrides)
    if cfg is None:
        raise ZooError("no config to train: pass cfg (see trainers.config.resolve_config) or resume")
    check_config(cfg)
    preflight(cfg)
    if checkpoint:
        check_free_space(checkpoint_path(cfg["out"], checkpoint["step"] + 1), Path(checkpoint["path"]).stat().st_size)
    return cfg, checkpoint


def claim_run_directory(cfg: dict, resume, main: bool) -> RunDirectory:
    """The main process claims (new run) or locks (resume) the run directory; the others learn the outcome,
    so that every process ends with the same error line rather than waiting for each other."""
    name = cfg["out"] or f"runs/{cfg['model']}-{datetime.now():%Y%m%d-%H%M%S}"
    run = RunDirectory(name if resume else broadcast_object_list([name])[0])  # the main process's timestamp
    error = None
    if main:
        try:
            run.lock() if resume else run.claim({**cfg, "out": str(run.path)})
        except ZooError as exc:
            error = exc
    if PartialState().num_processes > 1:
        error = broadcast_object_list([error])[0]
    if error is not None:
        raise error
    return run


def open_metrics(run_dir: Path, step: int):
    """``metrics.jsonl`` for appending, cut after the last line of ``step`` (a killed run logged steps after its
    last checkpoint; the resumed run logs them again). Cut in place: no extra space needed on a full disk."""
    metrics = open(run_dir / "metrics.jsonl", "a+b")
    metrics.seek(0)
    keep = 0
    for line in metrics:
        if _logged_step(line) > step:
            break
        keep += len(line)
    metrics.truncate(keep)
    metrics.close()
    return open(run_dir / "metrics.jsonl", "a")


def _logged_step(line: bytes) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a half-written last line of a killed run


# ---- set-up helpers -------------------------------------------------------------------------------------------

def build_networks(cfg: dict, recipe):
    """G and D, the one place they are built; keyword arguments they do not take name their setting."""
    try:
        G = create_model(cfg["model"], **cfg["model_kwargs"])
    except TypeError as exc:
        raise ZooError(f"setting model_kwargs: {cfg['model']} does not accept them ({exc})") from None
    try:
        D = discriminators.create_discriminator(recipe.discriminator, image_size=cfg["size"],
                                                **recipe.discriminator_kwargs)
    except TypeError as exc:
        raise ZooError(f"setting recipe.discriminator_kwargs: {recipe.discriminator} does not accept them "
                       f"({exc})") from None
    return G, D


def adam(model, spec) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=spec.lr, betas=spec.betas, eps=spec.eps,
                            weight_decay=spec.weight_decay)


class EMA:
    """Exponential moving average of G's weights (buffers copied), StyleGAN2's half-life in kimg.

    ``EMA.for_run`` returns a disabled EMA (falsy, every method a no-op) when the recipe has none.
    """

    def __init__(self, model=None, beta: float | None = None):
        self.model = copy.deepcopy(model).eval().requires_grad_(False) if model is not None else None
        self.beta = beta

    @classmethod
    def for_run(cls, model, ema_kimg: float | None, images_per_step: int) -> EMA:
        if not ema_kimg:
            return cls()
        return cls(model, 0.5 ** (images_per_step / (ema_kimg * 1000)))

    def __bool__(self) -> bool:
        return self.model is not None

    def to(self, device) -> None:
        if self:
            self.model.to(device)

    @torch.no_grad()
    def update(self, model) -> None:
        if not self:
            return
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1 - self.beta)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict | None:
        return self.model.state_dict() if self else None

    def load_state_dict(self, state) -> None:
        if self:
            if state is None:
                raise CheckpointError("the checkpoint holds no EMA generator but this config has ema_kimg set")
            self.model.load_state_dict(state)


def restore(checkpoint, accelerator, G, D, ema, opt_g, opt_d, loader):
    """Load a checkpoint into the prepared objects; returns ``(step, batches consumed, loader)``, the loader
    skipping the batches already seen, and the RNG of this process where it was."""
    accelerator.unwrap_model(G).load_state_dict(checkpoint["G"])
    accelerator.unwrap_model(D).load_state_dict(checkpoint["D"])
    ema.load_state_dict(checkpoint.get("G_ema"))
    opt_g.load_state_dict(checkpoint["opt_g"])
    opt_d.load_state_dict(checkpoint["opt_d"])
    rng = checkpoint["rng"]
    if len(rng) != accelerator.num_processes:
        raise CheckpointError(f"{checkpoint['path']} was saved by {len(rng)} process(es); resume it with as many "
                              f"(this launch has {accelerator.num_processes})")
    _set_rng_state(rng[accelerator.process_index])
    return checkpoint["step"], checkpoint["batches"], accelerator.skip_first_batches(loader, checkpoint["batches"])


def _worker_dies_with_parent(_worker_id: int) -> None:
    """DataLoader workers: die with the trainer (Linux), and leave SIGINT / SIGTERM to it (a terminal's Ctrl-C
    or a cluster's SIGTERM reaches the whole process group; the trainer stops its workers itself)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the workers' own watchdog notices the parent within seconds


class StopSignals:
    """SIGTERM / SIGINT set a flag; the loop finishes its step, saves and stops. A second signal during the
    save (or before) raises ``TrainingAborted`` at once.

    Under a launcher (torchrun, accelerate launch) Ctrl-C reaches a process twice, from the terminal and
    relayed by the launcher: with ``relayed``, a repeat within ``RELAY_WINDOW`` seconds counts as one.
    """

    RELAY_WINDOW = 0.5

    def __init__(self, relayed: bool = False):
        self.requested, self.at, self.saving = 0, 0.0, False
        self.window = self.RELAY_WINDOW if relayed else 0.0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, _frame):
        if not self.requested:
            self.requested, self.at = signum, time.monotonic()
            return
        if time.monotonic() - self.at < self.window:
            return
        self.restore()  # a third signal takes the default action
        during = "during a checkpoint save" if self.saving else "before the last step was saved"
        raise TrainingAborted(f"aborted by a second {signal.Signals(signum).name} {during}; the previous "
                              "checkpoint is intact", signum)

    def agreed(self, accelerator) -> int:
        """The signal any process received (0 for none), the same on all: a cheap all-reduce per step."""
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([self.requested], device=accelerator.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


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
    if name == "none":
        return None
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ZooError("--tracker tensorboard needs TensorBoard: pip install 'inpaint-zoo[tensorboard]'") from None
    if name == "wandb" and not os.environ.get("WANDB_API_KEY"):
        os.environ.setdefault("WANDB_MODE", "offline")  # no key: write runs locally, `wandb sync` later
    return name


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
