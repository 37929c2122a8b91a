"""Metrics against known values, the offline weights path, OpenCV baselines, and `zoo eval` / `zoo compare`."""

import json
import math
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
import torchvision

import zoo
from trainers import metrics as M
from trainers.evaluation import BASELINES, Entry, Inpainter, evaluate, load_model, opencv_inpaint, parse_entry
from zoo.cli import main
from zoo.contract import InpaintOutput
from zoo.errors import WeightsNotFoundError, ZooError
from zoo.weights import KNOWN_WEIGHTS


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo_cache"))


@pytest.fixture(scope="module")
def planted_weights(tmp_path_factory):
    """A torch home whose hub cache holds RANDOM weights under the standard file names."""
    home = tmp_path_factory.mktemp("planted_torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / KNOWN_WEIGHTS["alexnet"][0])
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    # Build torch-fidelity's network without its weight loading, then give every conv He-scaled random
    # weights so that activations keep their scale through the 90-odd layers.
    with mock.patch.object(fe, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    for key, value in state.items():
        if value.dim() == 4:
            state[key] = torch.randn_like(value) * math.sqrt(2 / value[0].numel())
    torch.save(state, folder / KNOWN_WEIGHTS["inception_fid"][0])
    return home


@pytest.fixture
def with_weights(planted_weights, _isolated_torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(planted_weights))
    return planted_weights


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_deepfill_v2.pt"
    torch.save(zoo.create_model("deepfill_v2", cnum=8).state_dict(), path)
    return path


# ---------------------------------------------------------------- pixel metrics


def _grid(x):
    return torch.round(x * 255) / 255


def test_identical_images_score_perfectly():
    target = _grid(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:30, 20:40] = 1
    out = M.pixel_metrics(target, target, mask)
    assert torch.all(out["l1"] == 0) and torch.all(out["l1_hole"] == 0)
    assert torch.allclose(out["psnr"], torch.full((2,), 100.0))  # the documented cap, not inf
    assert torch.allclose(out["psnr_hole"], torch.full((2,), 100.0))
    assert torch.allclose(out["ssim"], torch.ones(2)) and torch.allclose(out["ssim_hole"], torch.ones(2))
    assert "ms_ssim" not in out  # 64 px is too small for five scales


def test_constant_shift_gives_exact_l1_and_psnr():
    target = torch.full((1, 3, 64, 64), 0.5)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :16, :] = 1  # a quarter of the image
    pred = target + mask * 10 / 255  # shift only inside the hole
    out = M.pixel_metrics(pred, target, mask)
    assert out["l1_hole"].item() == pytest.approx(100 * 10 / 255, rel=1e-5)
    assert out["l1"].item() == pytest.approx(100 * 10 / 255 / 4, rel=1e-5)
    assert out["psnr_hole"].item() == pytest.approx(20 * math.log10(255 / 10), rel=1e-5)
    assert out["psnr"].item() == pytest.approx(10 * math.log10(4 * 255**2 / 100), rel=1e-5)


def test_known_noise_gives_the_expected_psnr():
    g = torch.Generator().manual_seed(1)
    target = _grid(torch.rand(3, 3, 192, 192, generator=g) * 0.8 + 0.1)
    signs = torch.randint(0, 2, target.shape, generator=g).float() * 2 - 1
    pred = target + signs * 5 / 255  # |error| exactly 5 levels everywhere: MSE = (5/255)^2
    out = M.pixel_metrics(pred, target, torch.ones(3, 1, 192, 192))
    expected = 20 * math.log10(255 / 5)
    assert torch.allclose(out["psnr"], torch.full((3,), expected), atol=1e-4)
    assert torch.allclose(out["l1"], torch.full((3,), 100 * 5 / 255), atol=1e-4)
    assert 0 < out["ms_ssim"].min() and out["ms_ssim"].max() < 1  # computed at 192 px, noise lowers it
    assert torch.all(out["ssim"] < 1)


def test_quantize_puts_images_on_the_8bit_grid():
    x = torch.linspace(-1.2, 1.2, 101)
    q = M.quantize(x)
    assert q.min() == 0 and q.max() == 1
    assert torch.allclose(q * 255, torch.round(q * 255))


# ---------------------------------------------------------------- set metrics


def test_fid_and_kid_on_known_feature_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 8))
    assert M.fid_from_features(real, real) == pytest.approx(0, abs=1e-6)
    # same covariance, mean shifted by c in each of 8 dims: FID = 8 c^2
    assert M.fid_from_features(real, real + 0.5) == pytest.approx(8 * 0.25, rel=1e-6)
    other = rng.normal(size=(200, 8))  # an independent sample of the same distribution
    assert abs(M.kid_from_features(real, other)) < 0.1  # measured -0.023: unbiased, so near 0 either side
    assert M.kid_from_features(real, other + 0.5) > 0.5  # measured 0.875
    assert M.fid_from_features(real[:1], real[:1]) is None and M.kid_from_features(real[:1], real[:1]) is None
    # fewer samples than KID's usual subset size of 1000 must not crash (torch-fidelity would)
    assert M.kid_from_features(real[:5], real[5:10] + 1) is not None


@pytest.mark.parametrize("n_real, n_fake", [(5, 9), (40, 30), (200, 150)])
def test_fid_matches_torch_fidelity_with_few_and_many_samples(n_real, n_fake):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(n_real)
    real = rng.normal(size=(n_real, 64)) @ rng.normal(size=(64, 64))
    fake = rng.normal(size=(n_fake, 64)) * 1.3 + 0.2
    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (real, fake)]
    reference = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    assert M.fid_from_features(real, fake) == pytest.approx(reference, rel=1e-6)


def test_p_ids_and_u_ids_on_separable_identical_and_same_distribution_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(100, 16))
    p_ids, u_ids = M.inception_discriminative_scores(real, real + 10)  # linearly separable
    assert (p_ids, u_ids) == (0.0, 0.0)
    p_ids, u_ids = M.inception_discriminative_scores(real, real.copy())  # indistinguishable pairs
    assert u_ids == 0.5 and p_ids == 0.0  # ties never count as "completed scores above real"
    fake = rng.normal(size=(2000, 4))
    p_ids, u_ids = M.inception_discriminative_scores(rng.normal(size=(2000, 4)), fake)
    assert 0.4 < u_ids <= 0.5 and 0.4 < p_ids < 0.6


def test_summarize_splits_by_bucket():
    per_pair = {"l1": np.array([1.0, 2.0, 3.0, 5.0])}
    buckets = ["a", "b", "a", "a"]
    feats = np.random.default_rng(0).normal(size=(4, 3))
    out = M.summarize(per_pair, buckets, ["a", "b", "c"], feats, feats + 1, ["l1", "fid", "p_ids", "u_ids"])
    assert out["overall"]["n"] == 4 and out["overall"]["l1"] == pytest.approx(2.75)
    assert out["buckets"]["a"]["l1"] == pytest.approx(3.0) and out["buckets"]["b"]["n"] == 1
    assert "c" not in out["buckets"]
    assert out["buckets"]["b"]["fid"] is None and out["buckets"]["a"]["fid"] == pytest.approx(3.0)
    assert out["overall"]["u_ids"] == 0.0 and "kid" not in out["overall"]


# ---------------------------------------------------------------- extractors through the weights resolver


def test_missing_weights_name_the_file_and_option():
    lpips = M.LPIPS("alex")
    inception = M.InceptionFeatures()
    assert lpips.path is None and "alexnet-owt-7be5be79.pth" in lpips.missing and "--lpips-weights" in lpips.missing
    assert inception.path is None and "weights-inception-2015-12-05-6726825d.pth" in inception.missing
    assert "--inception-weights" in inception.missing


def test_planted_weights_load_through_the_real_code(with_weights, tmp_path):
    lpips = M.LPIPS("alex")
    assert lpips.path.name == "alexnet-owt-7be5be79.pth"
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    same = lpips(a, a, mask)
    assert torch.allclose(same["lpips"], torch.zeros(2), atol=1e-6)
    assert torch.allclose(same["lpips_hole"], torch.zeros(2), atol=1e-6)
    assert torch.all(lpips(a, b, mask)["lpips"] > 0)
    # an explicit path wins over the cache; a junk file is refused with one line
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsNotFoundError, match="cannot read weights file"):
        M.LPIPS("alex", junk)
    torch.save({"weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsNotFoundError, match="does not hold alexnet weights"):
        M.LPIPS("alex", tmp_path / "wrong.pth")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        M.InceptionFeatures(tmp_path / "nothing.pth")


# ---------------------------------------------------------------- models and baselines


def test_opencv_baselines_keep_known_pixels_fill_holes_and_never_see_them():
    image = torch.zeros(2, 3, 64, 64)
    image[:, 0] = 0.5  # a constant colour: the right fill is (nearly) that colour
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 20:40, 10:50] = 1
    other = image + mask * torch.rand_like(image)  # different hole content
    assert {"opencv_telea", "opencv_ns"} <= set(BASELINES)
    for name, fill in BASELINES.items():
        out = fill(image, mask)
        assert torch.equal(out * (1 - mask), image * (1 - mask)), name
        # Navier-Stokes reproduces the colour exactly, Telea's weighting within a few 8-bit levels
        assert (out - (M.quantize(image) * 2 - 1)).abs().max() < 6 / 127.5, name
        assert torch.equal(out, fill(other, mask)), name
    assert torch.equal(BASELINES["opencv_ns"](image, mask), opencv_inpaint(image, mask, cv2.INPAINT_NS))


def test_mean_fill_is_the_mean_colour_of_the_known_pixels():
    image = torch.full((2, 3, 4, 4), -1.0)
    image[0, :, :, 2:] = 1.0  # image 0: left half black, right half white
    image[1, 0] = 0.0  # image 1: channel 0 grey (127.5 rounds to 128), channels 1, 2 black
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, 0, :] = 1  # image 0: top row is a hole -> known: 6 black, 6 white pixels
    mask[1, :, :, :2] = 1  # image 1: left half is a hole
    image_with_holes = image + mask * torch.rand_like(image)  # the fill must not depend on hole content
    out = BASELINES["mean_fill"](image_with_holes, mask)
    assert torch.equal(out * (1 - mask), image_with_holes * (1 - mask))
    assert torch.allclose(out[0, :, 0, :], torch.zeros(3, 4))  # mean of 6 x -1 and 6 x +1
    grey = 128 / 255 * 2 - 1
    assert torch.allclose(out[1, :, :, :2], torch.tensor([grey, -1.0, -1.0]).view(3, 1, 1).expand(3, 4, 2), atol=1e-6)
    full = BASELINES["mean_fill"](image, torch.ones(2, 1, 4, 4))  # nothing known: grey, not NaN
    assert torch.equal(full, torch.zeros_like(full))


def test_entries_and_model_loading(tiny_checkpoint, tmp_path):
    e = parse_entry("deepfill_v2,checkpoint=a.pt,label=mine,width=8,tf_mode=False")
    assert (e.name, e.checkpoint, e.label, e.width) == ("deepfill_v2", "a.pt", "mine", 8)
    assert e.overrides == {"tf_mode": False}
    for bad in ("checkpoint=a.pt", "deepfill_v2,oops"):
        with pytest.raises(ZooError):
            parse_entry(bad)
    with pytest.raises(ZooError, match="baselines: opencv_telea"):
        load_model(Entry("no_such_model"))
    with pytest.raises(ZooError, match="takes no checkpoint"):
        Inpainter(Entry("opencv_ns", checkpoint="x.pt"))
    # a zoo training checkpoint records the widths, so no width has to be given
    state = torch.load(tiny_checkpoint, weights_only=True)
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    torch.save({"format": "inpaint-zoo-checkpoint/1", "model": "deepfill_v2", "G": state, "G_ema": None,
                "config": {"model_kwargs": {"cnum": 8}}}, run / "step_0000010.pt")
    model = load_model(Entry("deepfill_v2", checkpoint=str(tmp_path / "run")))
    assert torch.equal(model.state_dict()[next(iter(state))], next(iter(state.values())))


def test_stochastic_models_get_the_same_noise_per_seed():
    class Noisy(torch.nn.Module):
        zoo_name = "deepfill_v2"

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, m):
            return InpaintOutput(stages=(torch.rand_like(x) * 2 - 1,))

    inp = Inpainter(Entry("opencv_telea"))
    inp.model = Noisy()
    image, mask = torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    before = torch.random.get_rng_state()
    a, b, c = inp(image, mask, seed=7), inp(image, mask, seed=7), inp(image, mask, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's random stream is untouched


# ---------------------------------------------------------------- end to end


def test_eval_cli_end_to_end_is_deterministic_and_reports_skipped_metrics(tmp_path, capsys):
    args = ["eval", "--model", "opencv_telea", "--size", "64", "--metrics", "l1,l1_hole,psnr,ssim,lpips,fid"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr()
    assert "skipped lpips: weights file alexnet-owt-7be5be79.pth not found" in printed.out
    assert "skipped fid: weights file weights-inception-2015-12-05-6726825d.pth not found" in printed.out
    assert "note: 2 images for 12 pairs" in printed.out
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert a["pairs"]["count"] == 12 and a["overall"]["n"] == 12
    assert set(a["buckets"]) == {"1-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%"}
    assert all(row["n"] == 2 for row in a["buckets"].values())
    assert a["overall"]["l1"] > 0 and a["overall"]["psnr"] > 10
    assert set(a["skipped"]) == {"lpips", "fid"}
    assert "lpips" not in a["overall"] and "psnr_hole" not in a["overall"]  # not asked for
    assert {k: a[k] for k in ("overall", "buckets", "masks")} == {k: b[k] for k in ("overall", "buckets", "masks")}
    # the hole is harder than the whole image: its L1 grows with the hole ratio
    rows = [a["buckets"][k]["l1"] for k in ("1-10%", "50-60%")]
    assert rows[0] < rows[1]
    for name in ("results.md", "per_pair.csv", "masks.json", "examples/bucket_1-10.png"):
        assert (tmp_path / "a" / name).is_file(), name
    assert len((tmp_path / "a" / "per_pair.csv").read_text().splitlines()) == 13


def test_compare_cli_with_a_tiny_model_and_the_baselines(tmp_path, tiny_checkpoint, with_weights, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--model", f"deepfill_v2,checkpoint={tiny_checkpoint},width=8,label=tiny",
               "opencv_telea", "--model", "opencv_ns", "--size", "64", "--pairs", "6", "--masks", "lama_thick",
               "--metrics", "l1,l1_hole,psnr,ssim_hole,lpips,lpips_hole", "--out", str(out)])
    assert rc == 0
    board = (out / "leaderboard.md").read_text()
    assert "| tiny | 0.12M |" in board and "| opencv_ns | - |" in board
    assert "LPIPS hole" in board and "## By hole ratio" in board
    lines = (out / "leaderboard.csv").read_text().splitlines()
    assert lines[0].startswith("model,bucket,n,l1,l1_hole,psnr,ssim_hole,lpips,lpips_hole")
    assert sum(line.startswith("tiny,all,6,") for line in lines) == 1
    for name in ("metrics_vs_hole_ratio.png", "side_by_side.png", "masks.json", "results/tiny.json"):
        assert (out / name).is_file(), name
    tiny = json.loads((out / "results" / "tiny.json").read_text())
    telea = json.loads((out / "results" / "opencv_telea.json").read_text())
    assert tiny["masks"]["sha256"] == telea["masks"]["sha256"]  # every model scored on the same pairs
    assert tiny["model"]["parameters"] > 0 and tiny["extractors"]["lpips"]["network"] == "alex"
    # an untrained tiny GAN is worse than OpenCV inside the holes
    assert tiny["overall"]["l1_hole"] > telea["overall"]["l1_hole"]
    assert "wrote" in capsys.readouterr().out


def test_inception_metrics_and_the_real_feature_cache(with_weights):
    kwargs = dict(size=64, pairs=2, metrics=("fid", "kid", "p_ids", "u_ids"), progress=False, log=lambda *_: None)
    first = evaluate([Entry("opencv_ns")], **kwargs)
    second = evaluate([Entry("opencv_ns")], **kwargs)
    assert first.extractors["inception"]["real_features"] == "computed"
    assert second.extractors["inception"]["real_features"] == "cache"
    a, b = first.results["opencv_ns"]["overall"], second.results["opencv_ns"]["overall"]
    assert a == b
    assert a["fid"] is not None and a["fid"] >= 0 and math.isfinite(a["kid"])
    assert 0 <= a["p_ids"] <= 100 and 0 <= a["u_ids"] <= 50


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_preset_evaluates_at_its_tiny_width(name):
    preset = zoo.get_preset(name)
    torch.manual_seed(0)
    ev = evaluate([Entry(name, overrides=dict(preset.tiny))], size=preset.tiny_size, pairs=2,
                  metrics=("l1_hole", "psnr"), progress=False, log=lambda *_: None)
    row = ev.results[name]["overall"]
    assert row["n"] == 2 and math.isfinite(row["l1_hole"]) and math.isfinite(row["psnr"])
    assert ev.models[name]["conditioning"] == (None if preset.recipe.condition is None
                                               else preset.recipe.condition.__name__)


@pytest.mark.parametrize("argv, message", [
    (["eval", "--model", "no_such_model"], "unknown model"),
    (["eval", "--model", "opencv_ns", "--masks", "nowhere"], "neither a protocol"),
    (["eval", "--model", "opencv_ns", "--pairs", "0"], "at least 1"),
    (["eval", "--model", "opencv_ns", "--metrics", "l1,bogus"], "unknown metrics"),
    (["compare", "--model", "deepfill_v2,checkpoint=/nonexistent.pt"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_default_output_folders_never_collide_within_one_second(tmp_path):
    from datetime import datetime

    from trainers.evaluation import default_out

    frozen = mock.Mock(wraps=datetime)
    frozen.now.return_value = datetime(2026, 1, 2, 3, 4, 5)
    with mock.patch("trainers.evaluation.reports.datetime", frozen):
        paths = [default_out("eval", "telea-liu-64", root=tmp_path) for _ in range(3)]
    assert [p.name for p in paths] == ["eval-telea-liu-64-20260102-030405", "eval-telea-liu-64-20260102-030405-2",
                                       "eval-telea-liu-64-20260102-030405-3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in paths)
