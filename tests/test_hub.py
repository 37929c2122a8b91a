"""The weights hub: released-weight tables, resolution, the resumable downloader on a real loopback HTTP server,
offline behaviour, publishing, and fine-tuning with the released discriminator."""

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import discriminators
import zoo
from tests.loopback import LoopbackServer
from tests.test_deepfill import V1_DAA233, random_state, v2_official_state
from tests.test_hint import TINY_OFFICIAL as HINT_TINY_OFFICIAL
from tests.test_hint import official_state as hint_official_state
from tests.test_mat import PICKLE_WARNING, official_pickle  # noqa: F401  (fixture)
from trainers.config import resolve_config
from trainers.trainer import train
from zoo import checkpoint_format as fmt
from zoo.cli import main as cli
from zoo.download import read_sidecar
from zoo.errors import CheckpointError, DownloadError, WeightsMissingError, ZooError
from zoo.hub import UnknownWeightsError, all_entries, cached_file, init_from, resolve_source
from zoo.mat import TINY as MAT_TINY
from zoo.mat import read_network_pickle
from zoo.registry import create_model, get_preset
from zoo.weights_table import HFFile, URLFile, WeightEntry, env_name

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings(PICKLE_WARNING)


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """Every test gets its own weights cache and Hugging Face home."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("ZOO_DOWNLOAD_RETRIES", "2")
    return tmp_path / "zoo-cache"


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed (they only ever reach 127.0.0.1 here)."""
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def server():
    s = LoopbackServer()
    yield s
    s.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_deepfill_file(seed=0):
    torch.manual_seed(seed)
    G = create_model("deepfill_v2", cnum=8)
    buffer = io.BytesIO()
    torch.save(G.state_dict(), buffer)
    return G, buffer.getvalue()


def register_loopback(monkeypatch, urls, data, tag="loopback", **fields):
    """A test-only release of deepfill_v2 whose sources are loopback URLs."""
    fields = {"hash": sha256(data), "size": len(data), "model_kwargs": {"cnum": 8}, **fields}
    entry = WeightEntry(tag, "loopback.pth", sources=tuple(URLFile(u) for u in urls), **fields)
    monkeypatch.setitem(get_preset("deepfill_v2").checkpoints, tag, entry)
    return f"deepfill_v2.{tag}", entry


def same_weights(model, G):
    return all(torch.equal(v, G.state_dict()[k]) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------------------
# The downloader against a real HTTP server


def test_clean_download_is_verified_recorded_and_loaded(online, server, monkeypatch):
    G, data = tiny_deepfill_file()
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", data)], data)
    model = zoo.load(key)
    assert same_weights(model, G)
    path = cached_file(key, entry)
    assert path.read_bytes() == data and not path.with_name(path.name + ".part").exists()
    assert read_sidecar(path)["sha256"] == sha256(data)
    assert server.sent("/w.pth") == len(data) and len(server.requests("/w.pth")) == 1
    zoo.load(key)  # the second load reads the cache
    assert len(server.requests("/w.pth")) == 1


def test_a_dropped_connection_resumes_with_a_range_request(online, server, monkeypatch, capsys):
    G, data = tiny_deepfill_file()
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", data, "drop_once")], data)
    assert same_weights(zoo.load(key), G)
    first, second = server.requests("/w.pth")
    assert first["status"] == 200 and first["sent"] == len(data) // 2
    assert second["status"] == 206 and second["range"] == len(data) // 2
    total = server.sent("/w.pth")
    assert total < 1.5 * len(data) and total == len(data)  # nothing fetched twice
    with capsys.disabled():
        print(f"\n[resume] file {len(data)} B, fetched {total} B in {len(server.requests('/w.pth'))} requests "
              f"({total / len(data):.2f}x)")


def test_wrong_bytes_fail_the_hash_and_leave_nothing_under_the_final_name(online, server, monkeypatch):
    _, data = tiny_deepfill_file()
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 3] ^= 0xFF
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", bytes(corrupt))], data)
    with pytest.raises(DownloadError, match="does not match its published hash"):
        zoo.load(key)
    path = cached_file(key, entry)
    assert not path.exists() and not path.with_name(path.name + ".part").exists()


def test_404_then_the_second_source(online, server, monkeypatch):
    G, data = tiny_deepfill_file()
    key, _ = register_loopback(monkeypatch, [server.url + "/gone.pth", server.add("/w.pth", data)], data)
    assert same_weights(zoo.load(key), G)
    assert [r["status"] for r in server.requests("/gone.pth")] == [404]


def test_a_server_error_is_one_clear_line(online, server, monkeypatch):
    _, data = tiny_deepfill_file()
    url = server.add("/w.pth", data, "500")
    key, entry = register_loopback(monkeypatch, [url], data)
    with pytest.raises(DownloadError) as err:
        zoo.load(key)
    assert "HTTP 500" in str(err.value) and url in str(err.value) and "\n" not in str(err.value)
    assert not cached_file(key, entry).exists()


def test_a_stalling_server_times_out_with_a_clear_error(online, server, monkeypatch):
    monkeypatch.setenv("ZOO_DOWNLOAD_TIMEOUT", "0.5")
    monkeypatch.setenv("ZOO_DOWNLOAD_RETRIES", "1")
    _, data = tiny_deepfill_file()
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", data, "stall")], data)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        zoo.load(key)
    assert time.monotonic() - started < 10
    assert not cached_file(key, entry).exists()  # only the .part, which a later attempt resumes


def test_a_full_disk_removes_the_part_and_says_no_space(online, server, monkeypatch):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    _, data = tiny_deepfill_file()
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", data)], data)
    path = cached_file(key, entry)
    path.parent.mkdir(parents=True)
    part = path.with_name(path.name + ".part")
    part.symlink_to("/dev/full")  # every write into the .part fails with ENOSPC, from the kernel
    with pytest.raises(DownloadError, match="no space"):
        zoo.load(key)
    assert not part.exists() and not part.is_symlink() and not path.exists()


def test_an_unwritable_cache_dir_is_one_clear_error(online, server, monkeypatch, tmp_path):
    _, data = tiny_deepfill_file()
    key, _ = register_loopback(monkeypatch, [server.add("/w.pth", data)], data)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ZOO_CACHE", str(blocker / "cache"))
    with pytest.raises(ZooError, match="is not writable.*--cache-dir"):
        zoo.load(key)
    assert server.requests("/w.pth") == []  # nothing fetched for nowhere


def test_a_truncated_cached_file_is_detected_and_fetched_again(online, server, monkeypatch):
    G, data = tiny_deepfill_file()
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", data)], data, hash=None, size=None)
    zoo.load(key)
    path = cached_file(key, entry)
    assert read_sidecar(path)["sha256"] == sha256(data)  # no published hash: the first download's is recorded
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="corrupt"):
        zoo.load(key)
    monkeypatch.delenv("ZOO_OFFLINE")
    assert same_weights(zoo.load(key), G)
    assert len(server.requests("/w.pth")) == 2 and path.read_bytes() == data
    assert len(list((path.parents[1] / "quarantine").iterdir())) == 1


def test_weights_verify_quarantines_a_changed_file(online, server, monkeypatch, capsys):
    _, data = tiny_deepfill_file()
    key, entry = register_loopback(monkeypatch, [server.add("/w.pth", data)], data)
    assert cli(["weights", "download", key]) == 0
    assert cli(["weights", "verify", key]) == 0
    path = cached_file(key, entry)
    flipped = bytearray(data)
    flipped[100] ^= 1
    path.write_bytes(bytes(flipped))  # same size
    assert cli(["weights", "verify", key]) == 1
    out = capsys.readouterr().out
    assert f"{key}: MISMATCH" in out and not path.exists()
    assert cli(["weights"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(key))
    assert row.split()[-1] == "no"


def test_two_processes_download_the_same_entry_once(server, tmp_path):
    G, data = tiny_deepfill_file()
    url = server.add("/states_tf_places2.pth", data, "slow")
    key = "deepfill_v2.places2"
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_OFFLINE", "HF_HUB_OFFLINE")}
    env.update({env_name(key): url, env_name(key) + "_SHA256": sha256(data), "PYTHONPATH": str(ROOT)})
    script = ("import zoo; m = zoo.load('deepfill_v2.places2', cnum=8); "
              "print(repr(float(sum(v.double().sum() for v in m.state_dict().values()))))")
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    expected = float(sum(v.double().sum() for v in G.state_dict().values()))
    assert [float(o) for o, _ in outs] == [expected, expected]
    assert [r["status"] for r in server.requests("/states_tf_places2.pth")] == [200]  # one download
    assert server.sent("/states_tf_places2.pth") == len(data)
    entry = get_preset("deepfill_v2").checkpoints["places2"]
    assert cached_file(key, entry).read_bytes() == data


# ---------------------------------------------------------------------------------------------------------
# Offline: the Hugging Face cache, and the one-line miss


def fill_hf_cache(hf_home: Path, repo: str, files: dict, commit="0123456789abcdef0123456789abcdef01234567"):
    """The Hub cache layout huggingface_hub writes: blobs by sha256, snapshots/<commit>/ links, refs/main."""
    base = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    for name, data in files.items():
        blob = base / "blobs" / sha256(data)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = base / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)


def test_a_prefilled_hugging_face_cache_loads_offline(tmp_path, monkeypatch):
    G, data = tiny_deepfill_file(seed=3)
    fill_hf_cache(tmp_path / "hf-home", "someorg/tiny-deepfill", {"states.pth": data})
    entry = WeightEntry("hf_test", "states.pth", sources=(HFFile("someorg/tiny-deepfill", "states.pth"),),
                        hash=sha256(data), model_kwargs={"cnum": 8})
    monkeypatch.setitem(get_preset("deepfill_v2").checkpoints, "hf_test", entry)
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert same_weights(zoo.load("deepfill_v2.hf_test"), G)


def test_an_offline_miss_is_one_line_exit_2_with_the_path(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (90, 120, 30)).save(tmp_path / "img.png")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 40, 40))
    mask.save(tmp_path / "mask.png")
    env = {**os.environ, "ZOO_OFFLINE": "1", "ZOO_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "inpaint", "--model", "deepfill_v2", "--weights",
                             "places2", "--image", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"),
                             "--out", str(tmp_path / "out.png")], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: weights deepfill_v2.places2")
    expected_path = tmp_path / "cache" / "deepfill_v2.places2" / "states_tf_places2.pth"
    assert str(expected_path) in lines[0] and "no published hash" in lines[0] and "drive.google.com" in lines[0]
    assert not (tmp_path / "out.png").exists()


# ---------------------------------------------------------------------------------------------------------
# Names: tags, other models' tags, sources


def test_tags_resolve_by_preset_and_unknown_ones_list_the_known(monkeypatch):
    with pytest.raises(UnknownWeightsError) as err:
        zoo.load("mat", pretrained="places1024")
    assert "places512" in str(err.value) and "ffhq512" in str(err.value)
    with pytest.raises(UnknownWeightsError, match="belong to mat, not deepfill_v2.*places2"):
        zoo.load("deepfill_v2", checkpoint="mat.places512")
    with pytest.raises(CheckpointError, match="not a weight tag of hint.*places2"):
        zoo.load("hint", checkpoint="no_such_file.pth")
    with pytest.raises(CheckpointError, match="not loaded: no converter"):
        zoo.load("deepfill_v2.places_mmagic")
    assert cli(["weights", "path", "mat.nope"]) == 2
    from trainers.evaluation import parse_entry

    assert parse_entry("mat,weights=mat.places512,label=m").checkpoint == "mat.places512"


def test_every_release_is_described():
    entries = all_entries()
    keys = [k for k, _, _ in entries]
    for needed in ("mat.places512", "mat.celebahq512", "mat.ffhq512", "mat_256.celebahq256", "hint.places2",
                   "hint.celebahq", "deepfill_v2.places2", "deepfill_v1.imagenet", "deepfill_v2.places_mmagic",
                   "deepfill_v1.celebahq_mmagic"):
        assert needed in keys
    for key, _name, entry in entries:
        assert entry.license != "unknown" and entry.origin and entry.paper and entry.data, key
        assert entry.format and entry.resolution, key
        assert entry.sources or "manual" in entry.notes, key  # no source: the notes say where to get it
        assert (entry.hash is None) or entry.hash_kind in ("sha256", "md5", "sha256-prefix"), key
    assert get_preset("mat").checkpoints["places512"].hash == "8ca927835fa3f5e21d65ffcb165377ed"


# ---------------------------------------------------------------------------------------------------------
# Every registered layout: a random file of it loads through the hub


def _fingerprint(t: torch.Tensor):
    t = t.detach().double().flatten()  # order-free: the converters only flip channels
    return t.numel(), round(float(t.sum()), 6), round(float((t * t).sum()), 6), float(t.min()), float(t.max())


def came_from(model_state: dict, file_tensors: dict, skip=()):
    """Every floating tensor of the model holds the values of some file tensor (up to the converter's channel
    flips): so nothing stayed at its random initialisation."""
    prints = {_fingerprint(v) for v in file_tensors.values() if torch.is_tensor(v) and v.is_floating_point()}
    for key, value in model_state.items():
        if value.is_floating_point() and not any(s in key for s in skip):
            assert _fingerprint(value) in prints, key


def layout_file(layout, tmp_path, request):
    """(file, generator overrides, the generator tensors it holds, discriminator tensors or None)."""
    path = tmp_path / f"{layout}.pth"
    if layout in ("nipponjo_tf", "nipponjo_pt"):
        state = v2_official_state("networks_tf" if layout == "nipponjo_tf" else "networks")
        torch.save({"G": state}, path)
        return path, {}, state, None
    if layout in ("daa233_gen", "daa233_tf"):
        state = random_state([(f"{m}.conv", o, i, k) for m, o, i, k in V1_DAA233])
        if layout == "daa233_tf":
            state = {f"netG.{k}": v for k, v in state.items()}
            state["localD.linear.weight"] = torch.zeros(1, 16384)
        torch.save(state, path)
        return path, {}, state, None
    if layout == "mat_g_pth":
        state = {k: v for k, v in create_model("mat", **MAT_TINY).state_dict().items()
                 if not k.endswith(("noise_strength", "noise_const"))}
        torch.save(state, path)
        return path, MAT_TINY, state, None
    if layout == "mat_pickle":
        pkl, _, G_ema = request.getfixturevalue("official_pickle")
        return pkl, MAT_TINY, G_ema.state_dict(), read_network_pickle(pkl)["D"]
    if layout == "hint_official":
        path = tmp_path / "InpaintingModel_gen.pth"
        state = hint_official_state(**HINT_TINY_OFFICIAL)
        torch.save({"iteration": 7, "generator": state}, path)
        D = discriminators.create_discriminator("patchgan_edgeconnect", in_channels=3, use_sigmoid=True)
        d_state = {k: torch.randn_like(v) for k, v in D.state_dict().items()}
        with_duplicates = {**d_state, **{k.replace("conv1.", "features.", 1): v for k, v in d_state.items()
                                         if k.startswith("conv1.")}}
        torch.save({"discriminator": with_duplicates}, tmp_path / "InpaintingModel_dis.pth")
        return path, get_preset("hint").tiny, state, d_state
    raise AssertionError(f"no test layout for {layout!r}: add one")


LOADABLE = [(key, name) for key, name, entry in all_entries() if entry.loadable]


@pytest.mark.parametrize("key, name", LOADABLE, ids=[k for k, _ in LOADABLE])
def test_every_release_has_a_converter_for_its_layout(key, name, tmp_path, monkeypatch, request):
    entry = get_preset(name).checkpoints[key.split(".", 1)[1]]
    path, overrides, g_tensors, d_tensors = layout_file(entry.format, tmp_path, request)
    monkeypatch.setenv(env_name(key), str(path))  # the per-entry override: a local file
    model = zoo.load(key, **overrides)
    came_from(model.state_dict(), g_tensors, skip=("flag_", "fuse_weight", "noise_strength", "noise_const"))
    if d_tensors is not None:  # releases with a discriminator hand it over for fine-tuning
        recipe = get_preset(name).recipe
        kwargs = {**recipe.discriminator_kwargs, **({"channel_max": 16} if name.startswith("mat") else {})}
        D = discriminators.create_discriminator(recipe.discriminator, image_size=64, **kwargs)
        G = create_model(name, **overrides)
        report = init_from(G, D, key, {"model": name})
        assert report["discriminator_keys"] == len(D.state_dict())
        assert all(torch.equal(v, d_tensors[k]) for k, v in D.state_dict().items())


def test_a_pickle_is_converted_once_to_safetensors(official_pickle, monkeypatch, tmp_path, caches):  # noqa: F811
    pkl, _, G_ema = official_pickle
    key = "mat.celebahq512"
    entry = get_preset("mat").checkpoints["celebahq512"]
    cached = cached_file(key, entry)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(pkl.read_bytes())  # a manual download into the path the miss message names
    first = zoo.load(key, **MAT_TINY)
    converted = cached.with_name(cached.name + ".zoo.safetensors")
    from safetensors import safe_open

    with safe_open(str(converted), "pt") as f:
        assert f.metadata()["source_sha256"] == sha256(pkl.read_bytes()) == read_sidecar(cached)["sha256"]
        assert {k.split("/")[0] for k in f.keys()} == {"G", "G_ema", "D"}
    monkeypatch.setattr("zoo.mat.read_network_pickle", lambda path: pytest.fail("unpickled again"))
    object.__setattr__(entry, "reader", lambda path: pytest.fail("unpickled again"))  # frozen: restore below
    try:
        second = zoo.load(key, **MAT_TINY)
    finally:
        object.__setattr__(entry, "reader", read_network_pickle)
    for k, v in G_ema.state_dict().items():
        assert torch.equal(first.state_dict()[k], v) and torch.equal(second.state_dict()[k], v)


# ---------------------------------------------------------------------------------------------------------
# Publishing and fine-tuning


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory whose checkpoint the trainer's own writer saved: G, its EMA, D, stepped optimisers."""
    from trainers.checkpoint import save_checkpoint

    run = tmp_path_factory.mktemp("run") / "run"
    cfg = resolve_config("deepfill_v2", width=8, flags=dict(size=64, batch_size=2, max_steps=2, out=str(run)))
    torch.manual_seed(0)
    G, G_ema = create_model("deepfill_v2", cnum=8), create_model("deepfill_v2", cnum=8)
    D = discriminators.create_discriminator("patchgan", image_size=64, **get_preset("deepfill_v2").recipe
                                            .discriminator_kwargs)
    opts = [torch.optim.Adam(m.parameters()) for m in (G, D)]
    for opt, m in zip(opts, (G, D)):
        sum(p.sum() for p in m.parameters()).backward()
        opt.step()
    save_checkpoint({"model": "deepfill_v2", "config": cfg, "step": 2, "batches": 2, "rng": [],
                     "G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                     "opt_g": opts[0].state_dict(), "opt_d": opts[1].state_dict()}, run, 2)
    return run


def test_publish_then_load_the_folder_gives_identical_outputs(tiny_run, tmp_path, capsys):
    out = tmp_path / "published"
    assert cli(["publish", str(tiny_run), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "discriminator.safetensors", "config.json",
                                               "README.md"}
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "deepfill_v2" and config["model_kwargs"]["cnum"] == 8
    assert config["tensor_convention"]["mask"].endswith("1 = hole")
    card = (out / "README.md").read_text()
    assert "deepfill_v2" in card and "Free-Form Image Inpainting" in card and "step 2" in card
    published = zoo.load("local-dir:" + str(out))
    original = zoo.load("deepfill_v2", checkpoint=tiny_run)
    image, mask = torch.rand(1, 3, 64, 64) * 2 - 1, torch.zeros(1, 1, 64, 64)
    mask[..., 16:40, 20:44] = 1
    assert torch.equal(zoo.inpaint(published, image, mask), zoo.inpaint(original, image, mask))
    # the published discriminator comes back for fine-tuning; a second publish into it is refused
    G = create_model("deepfill_v2", cnum=8)
    D = discriminators.create_discriminator("patchgan", image_size=64, **get_preset("deepfill_v2").recipe
                                            .discriminator_kwargs)
    report = init_from(G, D, "local-dir:" + str(out), {"model": "deepfill_v2"})
    ckpt = torch.load(fmt.newest_checkpoint(tiny_run), weights_only=True)
    assert all(torch.equal(v, ckpt["D"][k]) for k, v in D.state_dict().items())
    assert report["discriminator_keys"] == len(ckpt["D"])
    assert cli(["publish", str(tiny_run), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    # the same folder uploaded to the Hub: a pre-filled Hub cache loads it offline (no discriminator needed)
    fill_hf_cache(tmp_path / "hf-home", "someorg/my-deepfill",
                  {n: (out / n).read_bytes() for n in ("config.json", "model.safetensors")})
    from_hub = zoo.load("hf-hub:someorg/my-deepfill")
    assert torch.equal(zoo.inpaint(from_hub, image, mask), zoo.inpaint(original, image, mask))
    assert cli(["publish", str(tiny_run), "--out", str(tmp_path / "again"), "--push", "someorg/x"]) == 2
    assert "uploads are off" in capsys.readouterr().err


def test_cache_dir_option_moves_the_cache(tmp_path, capsys):
    assert cli(["--cache-dir", str(tmp_path / "elsewhere"), "weights", "path", "mat.places512"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "elsewhere" / "mat.places512" /
                                                  "Places_512_FullData_G.pth")


def test_optimizer_state_comes_only_from_zoo_checkpoints_when_asked(tiny_run):
    G = create_model("deepfill_v2", cnum=8)
    report = init_from(G, None, str(tiny_run), {"model": "deepfill_v2", "init": {"optimizers": True}})
    opt_g, opt_d = report["optimizer_states"]
    assert opt_g["state"] and opt_d["state"]  # Adam moments after two steps
    plain = init_from(G, None, str(tiny_run), {"model": "deepfill_v2"})
    assert "optimizer_states" not in plain and plain["generator"] == "G_ema"
    ckpt = torch.load(fmt.newest_checkpoint(tiny_run), weights_only=True)
    assert all(torch.equal(v, ckpt["G_ema"][k]) for k, v in G.state_dict().items())  # EMA, not G



def test_the_trainer_restores_optimisers_only_when_asked(tiny_run, tmp_path):
    steps = {}
    for restore in (True, False):
        cfg = resolve_config("deepfill_v2", width=8, sets=[f"init.optimizers={str(restore).lower()}"],
                             flags=dict(size=64, batch_size=2, workers=0, tracker="none", max_steps=1,
                                        sample_every=100, init_from=str(tiny_run), out=str(tmp_path / str(restore))))
        run = Path(train(cfg))
        ckpt = torch.load(fmt.newest_checkpoint(run), weights_only=True)
        steps[restore] = {int(v["step"]) for v in ckpt["opt_g"]["state"].values()}
        assert yaml.safe_load((run / "config.yaml").read_text())["initialised_from"]["optimizers"] is restore
    assert steps == {True: {2}, False: {1}}  # Adam's counters continue from the source's one step


def test_resolving_a_published_folder_needs_its_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="config.json"):
        resolve_source("local-dir:" + str(tmp_path))


def test_fine_tune_from_a_mat_pickle_loads_g_ema_and_d_and_freezes(official_pickle, tmp_path, capsys):  # noqa: F811
    pkl, _, G_ema = official_pickle
    sets = [f"model_kwargs.{k}={v}" for k, v in MAT_TINY.items()] + [
        "recipe.discriminator_kwargs.channel_max=16", "freeze=[mapping]"]
    cfg = resolve_config(model="mat", sets=sets, flags=dict(size=64, batch_size=2, workers=0, tracker="none",
                                                            max_steps=1, log_every=1, sample_every=100,
                                                            init_from=str(pkl), out=str(tmp_path / "run")))
    # the trainer's set-up, then init_from: D holds exactly the released discriminator
    recipe = get_preset("mat").recipe
    G = create_model("mat", **cfg["model_kwargs"])
    D = discriminators.create_discriminator(recipe.discriminator, image_size=64,
                                            **cfg["recipe"]["discriminator_kwargs"])
    report = init_from(G, D, str(pkl), cfg)
    released = read_network_pickle(pkl)
    assert all(torch.equal(v, released["D"][k]) for k, v in D.state_dict().items())
    assert all(torch.equal(v, G_ema.state_dict()[k]) for k, v in G.state_dict().items())
    assert report["generator"] == "G_ema" and report["discriminator_keys"] == len(released["D"])
    frozen = [n for n, p in G.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("mapping") for n in frozen) and report["frozen_tensors"] == len(frozen)
    # and through the trainer: the printed line, config.yaml, frozen weights unchanged by a step
    run = Path(train(cfg))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("initialised from"))
    assert f"G_ema ({len(G_ema.state_dict())} keys)" in line and f"D ({len(released['D'])} keys)" in line
    written = yaml.safe_load((run / "config.yaml").read_text())["initialised_from"]
    assert written["discriminator_keys"] == len(released["D"]) and written["frozen_tensors"] == len(frozen)
    ckpt = torch.load(fmt.newest_checkpoint(run), weights_only=True)
    assert all(torch.equal(ckpt["G"][n], G_ema.state_dict()[n]) for n in frozen)
    assert not torch.equal(ckpt["D"]["fc1.weight"], released["D"]["fc1.weight"])  # D trained on from there
    # init.discriminator=false keeps a fresh D
    D2 = discriminators.create_discriminator(recipe.discriminator, image_size=64,
                                             **cfg["recipe"]["discriminator_kwargs"])
    fresh = {k: v.clone() for k, v in D2.state_dict().items()}
    report = init_from(create_model("mat", **cfg["model_kwargs"]), D2, str(pkl),
                       {**cfg, "init": {"discriminator": False}, "freeze": []})
    assert report["discriminator"] is None and all(torch.equal(v, fresh[k]) for k, v in D2.state_dict().items())


def test_freeze_with_a_prefix_that_matches_nothing_is_refused():
    G = create_model("deepfill_v2", cnum=8)
    path = Path(os.environ["ZOO_CACHE"]) / "g.pth"
    path.parent.mkdir(parents=True)
    torch.save(G.state_dict(), path)
    with pytest.raises(ZooError, match="freeze: no generator parameter starts with"):
        init_from(G, None, str(path), {"model": "deepfill_v2", "freeze": ["nothing_like_this"]})
