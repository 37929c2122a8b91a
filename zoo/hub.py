"""Weights from any source: resolved to a verified local file, loaded into a generator (and a discriminator).

A SOURCE (``zoo.load``, ``--weights``, ``--init-from``, ``weights=`` in compare entries) is one of:

* a path: a zoo training checkpoint, a run directory (its newest checkpoint), a published folder, or an
  official file of the family (MAT ``.pkl``, HINT ``InpaintingModel_gen.pth``, nipponjo / daa233 files);
* ``PRESET.TAG`` (``mat.places512``), or ``TAG`` when the preset is known: a registered release;
* ``hf-hub:ORG/REPO[@REVISION]``: a published folder on the Hugging Face Hub;
* ``local-dir:DIR``: a published folder on disk (what ``zoo publish`` writes).

A registered release resolves in order: the per-entry environment override ``ZOO_WEIGHTS_<PRESET>_<TAG>``
(a path, or a URL checked against ``..._SHA256``), the cache (``$ZOO_CACHE``, default
``~/.cache/inpaint-zoo``, one folder per release, a sha256 sidecar per file), then the entry's sources in
order. ``ZOO_OFFLINE`` / ``HF_HUB_OFFLINE`` mean no network call at all. Files that need unpickling are
converted once into a safetensors bundle beside the original; later loads read only that.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo import checkpoint_format as fmt
from zoo.download import (
    check_file,
    digests,
    download_gdrive,
    download_url,
    hash_matches,
    offline,
    read_sidecar,
    write_sidecar,
)
from zoo.errors import CheckpointError, DownloadError, WeightsMissingError, ZooError
from zoo.registry import get_preset, list_models
from zoo.weights_table import GDriveFile, HFFile, URLFile, WeightEntry, env_name

HF_PREFIX, LOCAL_PREFIX = "hf-hub:", "local-dir:"
CONVERTED_SUFFIX = ".zoo.safetensors"


class UnknownWeightsError(ZooError, KeyError):
    def __str__(self):
        return str(self.args[0])


# ---------------------------------------------------------------------------------------------------------
# The registry of released weights and the cache


def cache_root() -> Path:
    return Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "inpaint-zoo").expanduser()


def all_entries() -> list[tuple[str, str, WeightEntry]]:
    """``(key, preset, entry)`` for every registered release, in registry order."""
    return [(f"{name}.{tag}", name, entry) for name in list_models()
            for tag, entry in get_preset(name).checkpoints.items()]


def _known_tags(name: str) -> str:
    tags = list(get_preset(name).checkpoints)
    return ", ".join(tags) if tags else "none released"


def find_entry(text: str, model: str | None = None) -> tuple[str, WeightEntry]:
    """``(preset, entry)`` for ``PRESET.TAG`` or, with ``model``, a bare ``TAG``."""
    preset, dot, tag = text.partition(".")
    if not dot:
        if model is None:
            raise UnknownWeightsError(f"weights {text!r}: name them PRESET.TAG (see `zoo weights`)")
        preset, tag = model, text
    get_preset(preset)  # unknown preset: the registry's error lists the models
    if model is not None and preset != model:
        raise UnknownWeightsError(f"weights {text} belong to {preset}, not {model} (weights of {model}: "
                                  f"{_known_tags(model)})")
    table = get_preset(preset).checkpoints
    if tag not in table:
        raise UnknownWeightsError(f"unknown weights {tag!r} for {preset}; known: {_known_tags(preset)}")
    return preset, table[tag]


def cached_file(key: str, entry: WeightEntry) -> Path:
    return cache_root() / key / entry.filename


def _ensure_dir(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ZooError(f"cache directory {folder} is not writable ({exc.strerror or exc}): choose another with "
                       f"--cache-dir DIR or ZOO_CACHE=DIR") from None
    return folder


def cached_ok(path: Path, expected: str | None = None, kind: str = "sha256", size: int | None = None,
              full: bool = False) -> bool:
    """Does the cached ``path`` still match what was verified when it arrived? Size always; the hash when
    the file changed since (mtime) or ``full``."""
    record = read_sidecar(path)
    if record is None or not path.is_file():
        return False
    st = path.stat()
    if st.st_size != record.get("size") or (size is not None and st.st_size != size):
        return False
    if not full and st.st_mtime_ns == record.get("mtime_ns"):
        return True
    found = digests(path, ("md5",) if kind == "md5" else ())
    return found["sha256"] == record.get("sha256") and hash_matches(found, expected, kind)


def _adopt(path: Path, expected: str | None, kind: str, size: int | None) -> None:
    """A file the user put into the cache by hand: check it against the published hash, then record it."""
    check_file(path, expected, kind, size, "the cache")
    try:
        write_sidecar(path, digests(path)["sha256"], "placed by hand")
    except OSError:
        pass  # a read-only cache still loads; the next load checks again


def quarantine(path: Path) -> Path:
    """Move a file that failed its check out of the way (kept for inspection, never loaded)."""
    target = cache_root() / "quarantine" / f"{path.parent.name}-{path.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    for extra in (path.with_name(path.name + ".sha256"), _converted(path)):
        extra.unlink(missing_ok=True)
    return target


def _converted(path: Path) -> Path:
    return path.with_name(path.name + CONVERTED_SUFFIX)


def _hf_cache() -> str | None:
    """The Hugging Face cache folder from the environment as it is now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _hf_download(repo: str, filename: str, revision: str = "main", optional: bool = False) -> Path | None:
    """``hf_hub_download`` (its cache, revisions and resume); offline it reads only the local cache."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename, revision=revision, cache_dir=_hf_cache(),
                                                    local_files_only=offline()))
    except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
        if optional and (isinstance(exc, EntryNotFoundError) or offline()):
            return None
        where = "in the local Hugging Face cache (offline)" if offline() else "on the Hub"
        raise DownloadError(f"{filename} of {repo}@{revision} not found {where}") from None
    except Exception as exc:  # network, authentication, unknown repository
        raise DownloadError(f"{repo}@{revision}/{filename}: {type(exc).__name__}: {str(exc).splitlines()[0]}") \
            from None


def _missing_message(key: str, entry: WeightEntry, path: Path, reason: str) -> str:
    sources = ", ".join(str(s) for s in entry.sources) or f"manual download from {entry.origin or 'its authors'}"
    beside = f", with {' and '.join(entry.companions)} beside it" if entry.companions else ""
    return (f"weights {key} ({entry.filename}, {entry.hash_text()}) {reason}: put the file at {path}{beside} "
            f"(sources: {sources})")


def resolve_entry(key: str, entry: WeightEntry, progress: bool = True) -> Path:
    """A verified local file for release ``key``; converted to a safetensors bundle when it needs unpickling."""
    import filelock

    override = os.environ.get(env_name(key))
    sources = entry.sources
    expected, kind = entry.hash, entry.hash_kind
    if override and not re.match(r"https?://", override):
        path = Path(override).expanduser()
        if not path.is_file():
            raise WeightsMissingError(f"{env_name(key)}={override}: no such file")
        return _convert_once(path, entry)
    if override:
        sources = (URLFile(override),)
        if os.environ.get(env_name(key) + "_SHA256"):
            expected, kind = os.environ[env_name(key) + "_SHA256"], "sha256"
    path = cached_file(key, entry)
    if path.is_file() and read_sidecar(path) is None:
        _adopt(path, expected, kind, entry.size)
    if path.is_file() and cached_ok(path, expected, kind, entry.size):  # the common case: no lock, no writes
        return _convert_once(path, entry)
    for source in sources:  # a pre-filled Hugging Face cache counts as a cache (no network when offline)
        if isinstance(source, HFFile) and offline():
            try:
                return _convert_once(_verified_hf(source, expected, kind, entry), entry)
            except DownloadError:
                pass
    if offline():
        reason = "are corrupt in the cache (size or hash differs from the record)" if path.is_file() else \
            "are not on this machine and downloads are off (ZOO_OFFLINE / HF_HUB_OFFLINE)"
        raise WeightsMissingError(_missing_message(key, entry, path, reason))
    if not sources:
        raise WeightsMissingError(_missing_message(key, entry, path, "have no download source"))
    _ensure_dir(path.parent)
    with filelock.FileLock(str(path) + ".lock"):  # DDP ranks, two shells: one downloads, the others wait
        if path.is_file() and not cached_ok(path, expected, kind, entry.size):
            moved = quarantine(path)
            print(f"warning: cached {path.name} failed its check; moved to {moved}, downloading again",
                  file=sys.stderr)
        if not path.is_file():
            errors = []
            for source in sources:
                try:
                    if isinstance(source, HFFile):
                        return _convert_once(_verified_hf(source, expected, kind, entry), entry)
                    if isinstance(source, GDriveFile):
                        download_gdrive(source.file_id, path, expected, kind, entry.size, progress)
                    else:
                        download_url(source.url, path, expected, kind, entry.size, progress)
                    break
                except DownloadError as exc:
                    errors.append(str(exc))
            else:
                raise DownloadError(f"could not download {key}: " + "; ".join(errors))
        return _convert_once(path, entry)


def _verified_hf(source: HFFile, expected, kind, entry: WeightEntry) -> Path:
    path = _hf_download(source.repo, source.filename, source.revision)
    if expected and not hash_matches(digests(path, ("md5",) if kind == "md5" else ()), expected, kind):
        raise DownloadError(f"{source} does not match its published hash ({kind} {expected})")
    return path


def _convert_once(path: Path, entry: WeightEntry | None) -> Path:
    """Official files that need unpickling become ``NAME.zoo.safetensors`` once (recording the source's
    sha256); later loads read only that."""
    if entry is None or entry.reader is None:
        return path
    from safetensors import safe_open
    from safetensors.torch import save_file

    record = read_sidecar(path)
    source_sha = record["sha256"] if record and record.get("size") == path.stat().st_size else \
        digests(path)["sha256"]
    converted = _converted(path)
    if converted.is_file():
        try:
            with safe_open(str(converted), "pt") as f:
                if (f.metadata() or {}).get("source_sha256") == source_sha:
                    return converted
        except Exception:
            pass  # unreadable: convert again
    networks = entry.reader(path)
    tensors = {f"{part}/{k}": v.detach().contiguous().clone() for part, state in networks.items()
               if part in fmt.NETWORKS and state for k, v in state.items() if torch.is_tensor(v)}
    meta = {"format": fmt.BUNDLE_FORMAT, "source_file": path.name, "source_sha256": source_sha,
            "converted_by": "inpaint-zoo"}
    tmp = converted.with_name(converted.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, converted)
    except OSError:  # a read-only location (an override path): load the conversion from memory instead
        tmp.unlink(missing_ok=True)
        return path
    return converted


# ---------------------------------------------------------------------------------------------------------
# Reading files and resolving a SOURCE


def read_file(path):
    """The weights in ``path``: a safetensors file (a bundle becomes ``{"format", "G", "G_ema", "D"}``), a
    torch file (``weights_only``), or None when it is neither (an official pickle the converter reads)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.name.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__})") from None
        if meta.get("format") != fmt.BUNDLE_FORMAT:
            return tensors
        networks: dict[str, dict] = {}
        for key, value in tensors.items():
            part, _, name = key.partition("/")
            networks.setdefault(part, {})[name] = value
        return fmt.make_bundle(networks, source_sha256=meta.get("source_sha256"))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


@dataclass
class Resolved:
    """A SOURCE made local: the object read from it, where it came from, and what it says about the model."""

    obj: Any
    path: Path
    label: str
    model: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    entry: WeightEntry | None = None


def _published(folder: Path, files: dict[str, Path | None], label: str) -> Resolved:
    """A published folder: config.json + model.safetensors (+ discriminator.safetensors) as a bundle."""
    config_path = files.get(fmt.PUBLISHED_CONFIG)
    if config_path is None or not config_path.is_file():
        raise CheckpointError(f"{label} has no {fmt.PUBLISHED_CONFIG} (is it a folder written by `zoo publish`?)")
    try:
        config = json.loads(config_path.read_text())
        model = config["model"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{config_path} is not an inpaint-zoo config.json (no 'model')") from None
    g_file = files.get(fmt.PUBLISHED_MODEL)
    if g_file is None or not g_file.is_file():
        raise CheckpointError(f"{label} has no {fmt.PUBLISHED_MODEL}")
    generator = read_file(g_file)
    d_file = files.get(fmt.PUBLISHED_DISCRIMINATOR)
    discriminator = read_file(d_file) if d_file is not None and d_file.is_file() else None
    part = fmt.GENERATOR_EMA if config.get("weights") == fmt.GENERATOR_EMA else fmt.GENERATOR
    bundle = fmt.make_bundle({part: generator, fmt.DISCRIMINATOR: discriminator}, model=model,
                             model_kwargs=config.get("model_kwargs"))
    return Resolved(bundle, g_file, label, model, dict(config.get("model_kwargs") or {}))


def _looks_like_tag(text: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)?", text))


def resolve_source(source, model: str | None = None, progress: bool = True) -> Resolved:
    """Make ``source`` (path, PRESET.TAG, TAG, hf-hub:, local-dir:) local and read it."""
    text = str(source)
    if text.startswith(HF_PREFIX):
        repo, _, revision = text[len(HF_PREFIX):].partition("@")
        files = {name: _hf_download(repo, name, revision or "main", optional=name == fmt.PUBLISHED_DISCRIMINATOR)
                 for name in (fmt.PUBLISHED_CONFIG, fmt.PUBLISHED_MODEL, fmt.PUBLISHED_DISCRIMINATOR)}
        return _published(Path(repo), files, text)
    if text.startswith(LOCAL_PREFIX):
        folder = Path(text[len(LOCAL_PREFIX):]).expanduser()
        if not folder.is_dir():
            raise CheckpointError(f"{text}: {folder} is not a folder")
        return _published(folder, {n: folder / n for n in (fmt.PUBLISHED_CONFIG, fmt.PUBLISHED_MODEL,
                                                           fmt.PUBLISHED_DISCRIMINATOR)}, text)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / fmt.PUBLISHED_CONFIG).is_file():
            return resolve_source(LOCAL_PREFIX + str(path), model, progress)
        newest = fmt.newest_checkpoint(path)
        if newest is None:
            raise CheckpointError(f"{path} is neither a run directory with checkpoints nor a published folder")
        path = newest
    if path.is_file():
        obj = read_file(path)
        if obj is None and model in list_models():  # an official pickle: the family's reader, in memory
            readers = [e.reader for e in get_preset(model).checkpoints.values() if e.reader is not None]
            if readers:
                obj = fmt.make_bundle(readers[0](path))
        return Resolved(obj, path, str(path), fmt.saved_model_name(obj), fmt.saved_model_kwargs(obj))
    if _looks_like_tag(text):
        preset_given = "." in text and text.split(".", 1)[0] in list_models()
        if preset_given or (model is not None and "." not in text):
            name, entry = find_entry(text, model)
            key = f"{name}.{entry.tag}"
            if not entry.loadable:
                raise CheckpointError(f"weights {key} ({entry.format} layout) can be downloaded and verified "
                                      f"but not loaded: no converter maps that layout onto {name} ({entry.notes})")
            local = resolve_entry(key, entry, progress)
            return Resolved(read_file(local), local, key, name, dict(entry.model_kwargs), entry)
    hint = f" (and not a weight tag of {model}: {_known_tags(model)})" if model and model in list_models() else ""
    raise CheckpointError(f"checkpoint {text} does not exist{hint}")


# ---------------------------------------------------------------------------------------------------------
# Loading into a generator and a discriminator


def check_state_dict(model: nn.Module, state: dict, source: str) -> None:
    """Raise unless ``state`` has exactly the model's keys with the model's shapes."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    if wrong:
        k = wrong[0]
        problems.append(f"shape mismatch at {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                        + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))


# kept for callers of the old names
is_zoo_checkpoint = fmt.is_zoo_checkpoint
saved_model_kwargs = fmt.saved_model_kwargs


def generator_state(obj, path, model: nn.Module, name: str, ema: bool = True) -> dict:
    """A state dict for ``model`` (preset ``name``) from ``obj``, the ``read_file`` of ``path``."""
    if fmt.has_networks(obj):
        if fmt.saved_model_name(obj) not in (None, name):
            raise CheckpointError(f"{path} holds a {fmt.saved_model_name(obj)} model, not {name}")
        _, state = fmt.generator_state(obj, ema)
        if fmt.is_zoo_checkpoint(obj) or set(state) == set(model.state_dict()):
            return state
        obj = state  # an official file converted to a bundle: the family converter maps it
    if isinstance(obj, dict) and set(obj) == set(model.state_dict()):
        return obj
    convert = get_preset(name).convert_checkpoint
    if convert is not None:  # official formats of the family: it reads the file itself if it must
        return convert(obj, path, model)
    if obj is None:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file")
    if isinstance(obj, dict) and all(torch.is_tensor(v) for v in obj.values()):
        return obj  # a plain state dict: check_state_dict names what does not fit
    raise CheckpointError(f"{path} is not a checkpoint format that {name} understands")


def discriminator_state(obj, path, D: nn.Module, name: str) -> dict | None:
    """The discriminator state ``obj`` (or the file beside ``path``) holds for ``D``, or None."""
    if fmt.has_networks(obj):
        state = fmt.discriminator_state(obj)
        if state is None or fmt.is_zoo_checkpoint(obj) or set(state) == set(D.state_dict()):
            return state
        obj = {fmt.DISCRIMINATOR: state}
    convert = get_preset(name).convert_discriminator
    return convert(obj, path, D) if convert is not None else None


def load_generator_weights(model: nn.Module, path, name: str, ema: bool = True, obj=None) -> nn.Module:
    """Load ``path`` (already read as ``obj``, if given) into ``model``, strictly."""
    state = generator_state(read_file(path) if obj is None else obj, path, model, name, ema=ema)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state)
    return model


def _split_name(name: str | None, checkpoint, pretrained):
    """``load("mat.places512")``, ``load("hf-hub:...")``, ``load("mat", pretrained=...)`` -> (name, source)."""
    if name is not None and checkpoint is None and (name.startswith((HF_PREFIX, LOCAL_PREFIX)) or "." in name):
        return None, name
    if pretrained is not None and pretrained is not False:
        if checkpoint is not None:
            raise ZooError("give either checkpoint= or pretrained=, not both")
        if name is None:
            raise ZooError("pretrained= needs a model name")
        if pretrained is True:
            tags = list(get_preset(name).checkpoints)
            if not tags:
                raise UnknownWeightsError(f"{name} has no released weights")
            pretrained = tags[0]
        return name, f"{name}.{pretrained}" if "." not in str(pretrained) else pretrained
    return name, checkpoint


def load_model(name: str | None = None, checkpoint=None, pretrained=None, ema: bool = True, **overrides):
    """Build preset ``name`` with the weights of SOURCE ``checkpoint`` (see the module doc); train mode."""
    from zoo.registry import create_model

    name, source = _split_name(name, checkpoint, pretrained)
    if source is None:
        if name is None:
            raise ZooError("no model name given")
        return create_model(name, **overrides)
    if name is not None:
        get_preset(name)
    resolved = resolve_source(source, name)
    if name is None:
        if resolved.model is None:
            raise ZooError(f"{resolved.label} does not say which model it holds: pass the model name too")
        name = resolved.model
    elif resolved.model not in (None, name):
        raise CheckpointError(f"{resolved.label} holds a {resolved.model} model, not {name}")
    model = create_model(name, **{**resolved.model_kwargs, **overrides})
    load_generator_weights(model, resolved.path, name, ema=ema, obj=resolved.obj)
    model.zoo_weights = resolved.label
    return model


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning: G (EMA when present) and D from any source


def _setting(cfg: dict, dotted: str, default):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def init_from(G: nn.Module, D: nn.Module | None, source, cfg: dict) -> dict:
    """Initialise a fine-tune: G from ``source`` (its EMA generator when it has one), D when the source has
    one and ``init.discriminator`` is on, parameters frozen by ``freeze`` prefixes. Returns a report (written
    into the run's config.yaml); ``report["optimizer_states"]`` holds both optimisers' states when
    ``init.optimizers`` is on and the source is a zoo checkpoint (pop it before writing the report)."""
    name = cfg["model"]
    resolved = resolve_source(source, name)
    if resolved.model not in (None, name):
        raise CheckpointError(f"{resolved.label} holds a {resolved.model} model, not {name}")
    obj = resolved.obj
    g_state = generator_state(obj, resolved.path, G, name, ema=True)
    check_state_dict(G, g_state, resolved.label)
    G.load_state_dict(g_state)
    g_part = fmt.generator_state(obj, True)[0] if fmt.has_networks(obj) else \
        ("G_ema" if resolved.entry and "G_ema" in resolved.entry.contents else "G")
    report = {"source": str(source), "file": str(resolved.path), "generator": g_part, "generator_keys": len(g_state),
              "discriminator": None, "discriminator_keys": 0, "frozen": [], "frozen_tensors": 0,
              "optimizers": False}
    if D is not None and _setting(cfg, "init.discriminator", True):
        d_state = discriminator_state(obj, resolved.path, D, name)
        if d_state is not None:
            check_state_dict(D, d_state, f"{resolved.label} (discriminator)")
            D.load_state_dict(d_state)
            report.update(discriminator="D", discriminator_keys=len(d_state))
    prefixes = cfg.get("freeze") or []
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    frozen = [n for n, p in G.named_parameters() if any(n.startswith(str(pre)) for pre in prefixes)]
    unmatched = [pre for pre in prefixes if not any(n.startswith(str(pre)) for n, _ in G.named_parameters())]
    if unmatched:
        raise ZooError(f"freeze: no generator parameter starts with {unmatched} (e.g. "
                       f"{sorted({n.split('.')[0] for n, _ in G.named_parameters()})[:6]})")
    for n, p in G.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    report.update(frozen=list(prefixes), frozen_tensors=len(frozen),
                  frozen_parameters=sum(p.numel() for n, p in G.named_parameters() if n in frozen))
    if _setting(cfg, "init.optimizers", False):
        states = fmt.optimizer_states(obj)
        if states is None:
            raise ZooError(f"init.optimizers=true needs a zoo training checkpoint; {resolved.label} has no "
                           f"optimiser state")
        report["optimizers"] = True
        report["optimizer_states"] = states
    d_text = f"D ({report['discriminator_keys']} keys)" if report["discriminator"] else "no D (fresh)"
    report["summary"] = (f"initialised from {resolved.label}: {g_part} ({len(g_state)} keys), {d_text}, "
                         f"{len(frozen)} tensors frozen, optimisers "
                         f"{'restored' if report['optimizers'] else 'fresh'}")
    return report


# ---------------------------------------------------------------------------------------------------------
# Publishing a run as a Hugging Face Hub folder


def _state_for_safetensors(state: dict) -> dict:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def publish(run, out, push: str | None = None, eval_dir=None) -> Path:
    """Write ``model.safetensors`` (EMA G when there is one), ``discriminator.safetensors``, ``config.json`` and
    a ``README.md`` model card for the newest checkpoint of ``run`` into ``out``; upload with ``push``."""
    from safetensors.torch import save_file

    run = Path(run)
    ckpt = fmt.newest_checkpoint(run) if run.is_dir() else run
    if ckpt is None or not ckpt.is_file():
        raise CheckpointError(f"{run} has no checkpoints to publish")
    obj = read_file(ckpt)
    if not fmt.is_zoo_checkpoint(obj):
        raise CheckpointError(f"{ckpt} is not an inpaint-zoo training checkpoint")
    cfg = obj.get(fmt.CONFIG) or {}
    name = obj.get(fmt.MODEL) or cfg.get("model")
    preset = get_preset(name)
    part, g_state = fmt.generator_state(obj, ema=True)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise ZooError(f"output folder {out} is not empty")
        meta = {"format": fmt.PUBLISHED_FORMAT, "model": name, "weights": part}
        save_file(_state_for_safetensors(g_state), str(out / fmt.PUBLISHED_MODEL), metadata=meta)
        if obj.get(fmt.DISCRIMINATOR) is not None:
            save_file(_state_for_safetensors(obj[fmt.DISCRIMINATOR]), str(out / fmt.PUBLISHED_DISCRIMINATOR),
                      metadata={**meta, "weights": "D", "discriminator": preset.recipe.discriminator})
        config = {"format": fmt.PUBLISHED_FORMAT, "library": "inpaint-zoo", "model": name, "weights": part,
                  "model_kwargs": fmt.saved_model_kwargs(obj), "training_size": cfg.get("size"),
                  "step": obj.get("step"), "discriminator": preset.recipe.discriminator,
                  "discriminator_kwargs": preset.recipe.discriminator_kwargs,
                  "tensor_convention": {"image": "float32 RGB N x 3 x H x W in [-1, 1]",
                                        "mask": "float32 N x 1 x H x W, 1 = hole",
                                        "input": "image * (1 - mask), mask", "size_multiple":
                                            preset.input_multiple(fmt.saved_model_kwargs(obj))},
                  "initialised_from": (cfg.get("initialised_from") or {}).get("source")}
        (out / fmt.PUBLISHED_CONFIG).write_text(json.dumps(config, indent=1, default=str))
        (out / "README.md").write_text(model_card(name, cfg, obj, part, eval_dir))
    except OSError as exc:
        raise ZooError(f"cannot write {out}: {exc.strerror or exc}") from None
    if push:
        if offline():
            raise ZooError(f"--push {push}: uploads are off (ZOO_OFFLINE / HF_HUB_OFFLINE); upload {out} later")
        import huggingface_hub

        try:
            api = huggingface_hub.HfApi()
            api.create_repo(push, exist_ok=True)
            api.upload_folder(repo_id=push, folder_path=str(out), commit_message=f"{name} step {obj.get('step')}")
        except Exception as exc:
            raise ZooError(f"--push {push} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return out


def model_card(name: str, cfg: dict, obj: dict, part: str, eval_dir=None) -> str:
    preset = get_preset(name)
    init = cfg.get("initialised_from") or {}
    licence = "other"
    if init.get("source") and _looks_like_tag(str(init["source"])):
        try:
            licence = find_entry(str(init["source"]), name)[1].license
        except ZooError:
            pass
    recipe = cfg.get("recipe") or {}
    losses = ", ".join(f"{t.get('name')} x{t.get('weight')} (stage {t.get('stage')})" for t in recipe.get("losses", []))
    adv = recipe.get("adversarial") or {}
    results = ""
    if eval_dir is not None and (Path(eval_dir) / "results.md").is_file():
        results = (Path(eval_dir) / "results.md").read_text()
    elif eval_dir is not None:
        raise ZooError(f"--eval {eval_dir}: no results.md there (the folder `zoo eval` writes)")
    lines = [
        "---", "library_name: inpaint-zoo", "tags: [image-inpainting, gan, inpaint-zoo, " + name + "]",
        f"license: {'cc-by-nc-4.0' if 'BY-NC' in licence else 'other'}", "---", "",
        f"# {name} (inpaint-zoo)", "",
        f"Preset `{name}`: {preset.paper}.", "",
        "## Weights", "",
        f"- `model.safetensors`: the {'EMA ' if part == 'G_ema' else ''}generator ({part}), step {obj.get('step')}",
        "- `discriminator.safetensors`: the discriminator, for fine-tuning" if obj.get("D") is not None else "",
        f"- generator arguments: `{json.dumps(fmt.saved_model_kwargs(obj))}`",
        f"- load: `zoo.load(\"local-dir:PATH\")` or `zoo.load(\"hf-hub:ORG/REPO\")`; fine-tune: "
        f"`zoo train --model {name} --init-from hf-hub:ORG/REPO`", "",
        "## Training", "",
        f"- data: {cfg.get('data') or 'the embedded demo photographs'}, size {cfg.get('size')}, batch "
        f"{cfg.get('batch_size')}, {obj.get('step')} steps",
        f"- initialised from: {init.get('source') or 'random'}",
        f"- losses: {losses or 'n/a'}; adversarial: {adv.get('loss')} x{adv.get('weight')}; discriminator "
        f"{recipe.get('discriminator')}",
        f"- masks: {cfg.get('masks')}", "",
        "## Evaluation", "", results or "No `zoo eval` results were given (`zoo publish RUN --eval EVAL_DIR`).", "",
        "## Licence", "",
        f"{licence}" + ("" if licence != "other" else ": the code is MIT; weights fine-tuned from a released "
                                                      "model inherit its licence (MAT, DeepFill: CC BY-NC 4.0)."),
        "", "Tensor convention: image float32 RGB in [-1, 1], mask 1 = hole; the generator sees "
        "image * (1 - mask) and mask.", ""]
    return "\n".join(line for line in lines if line is not None)
