"""Image sources, split manifests, seeded masks, the deterministic sample stream, corrupt images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from data import InpaintingStream, fixed_batch, list_images, make_mask, read_mask_file, read_split, write_split
from data.images import default_images, resolve_source
from data.masks import MASK_GENERATORS
from tests.helpers import write_images
from zoo.errors import MaskError, ZooError


def test_folder_is_listed_recursively_and_bad_paths_fail_clearly(tmp_path):
    write_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert len(list_images(tmp_path / "imgs")) == 5
    with pytest.raises(ZooError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="no images found"):
        list_images(tmp_path / "empty")


def test_list_file_paths_are_relative_to_the_list(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    (tmp_path / "train.txt").write_text("\n".join(str(p.relative_to(tmp_path)) for p in paths) + "\n")
    assert list_images(tmp_path / "train.txt") == paths


def test_split_manifest_is_deterministic_with_checksums(tmp_path):
    write_images(tmp_path / "imgs", 20)
    a = write_split(tmp_path / "imgs", tmp_path / "a.json", val=0.1, test=0.2, seed=3)
    b = write_split(tmp_path / "imgs", tmp_path / "b.json", val=0.1, test=0.2, seed=3)
    assert a["splits"] == b["splits"]
    sizes = {k: len(v) for k, v in a["splits"].items()}
    assert sizes == {"val": 2, "test": 4, "train": 14}
    every = [e["path"] for v in a["splits"].values() for e in v]
    assert len(set(every)) == 20  # disjoint and complete
    assert all(len(e["sha256"]) == 64 for v in a["splits"].values() for e in v)
    assert len(read_split(tmp_path / "a.json", "val", verify=True)) == 2
    assert resolve_source(tmp_path / "a.json", "train") == read_split(tmp_path / "a.json", "train")
    # a changed file no longer verifies
    victim = read_split(tmp_path / "a.json", "val")[0]
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(victim)
    with pytest.raises(ZooError, match="differs from the checksum"):
        read_split(tmp_path / "a.json", "val", verify=True)
    other = write_split(tmp_path / "imgs", tmp_path / "c.json", val=0.1, test=0.2, seed=4)
    assert other["splits"]["val"] != a["splits"]["val"] or other["splits"]["test"] != a["splits"]["test"]
    assert json.loads((tmp_path / "a.json").read_text())["format"] == "inpaint-zoo-split/1"


def test_embedded_default_photos_are_bundled():
    train, val = default_images("train"), default_images("val")
    assert len(train) >= 3 and len(val) >= 2 and not set(train) & set(val)
    assert all(p.is_file() for p in train + val)
    # colour photos only (greyscale ones taught the demo model to paint holes grey)
    assert all(Image.open(p).mode in ("RGB", "RGBA") for p in train + val)


@pytest.mark.parametrize("name", sorted(set(MASK_GENERATORS) - {"files"}))
def test_mask_generators_are_seeded_binary_and_nonempty(name):
    a = make_mask(name, np.random.default_rng(5), 64, 48)
    b = make_mask(name, np.random.default_rng(5), 64, 48)
    c = make_mask(name, np.random.default_rng(6), 64, 48)
    assert a.shape == (64, 48) and a.dtype == np.float32
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert np.array_equal(a, b)
    assert 0 < a.mean() < 1
    assert not np.array_equal(a, c)


def test_box_mask_is_a_rectangle_no_larger_than_half_the_side():
    for seed in range(20):
        m = make_mask("box", np.random.default_rng(seed), 256, 256)
        ys, xs = np.nonzero(m)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert m.sum() == h * w  # solid rectangle
        assert 128 - 32 <= h <= 128 and 128 - 32 <= w <= 128


def test_free_form_and_square_contains_a_96_pixel_square():
    m = make_mask("free_form_and_square", np.random.default_rng(0), 256, 256)
    found = any(m[y : y + 96, x : x + 96].all() for y in range(0, 161, 1) for x in range(0, 161, 8))
    assert found


def test_mask_files_polarity_and_resize(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    white = read_mask_file(tmp_path / "m.png")
    assert white.sum() == 50
    black = read_mask_file(tmp_path / "m.png", hole_value="black")
    assert black.sum() == 600 - 50
    assert read_mask_file(tmp_path / "m.png", 40, 60).sum() == 200
    drawn = make_mask("files", np.random.default_rng(0), 40, 60, folder=str(tmp_path))
    assert drawn.sum() == 200
    (tmp_path / "broken.png").write_bytes(b"not png")
    with pytest.raises(MaskError, match="cannot read mask"):
        read_mask_file(tmp_path / "broken.png")


def test_stream_is_a_pure_function_of_seed_and_index(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    a = InpaintingStream(paths, 32, "box", seed=1)
    b = InpaintingStream(paths, 32, "box", seed=1)
    for k in (7, 0, 7, 5):  # any order, any instance
        x, y = a[k], b[k]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    item = a[4]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    assert not torch.equal(a[4]["mask"], a[5]["mask"])
    # every image appears once per epoch, in an order that changes from epoch to epoch
    paths = write_images(tmp_path / "six", 6)
    originals = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    stream = InpaintingStream(paths, 32, "box", seed=1, augment=False)

    def shown(k):
        image, skipped = stream._load(k)
        assert skipped == 0
        return next(i for i, original in enumerate(originals) if np.array_equal(image, original))

    epochs = [[shown(k) for k in range(e * 6, (e + 1) * 6)] for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(6))
    assert len({tuple(order) for order in epochs}) == 3 and epochs[0] != list(range(6))  # reshuffled


@pytest.mark.parametrize("augment", [False, True])
def test_training_never_draws_the_evaluation_masks(tmp_path, augment):
    # A run trained on a protocol's generator (``--set masks=mat_large``) must not see the masks it is scored on.
    from data.mask_sets import protocol_set

    paths = write_images(tmp_path / "imgs", 2)
    stream = InpaintingStream(paths, 64, "mat_large", seed=0, augment=augment)
    evaluation = protocol_set("mat_large", 64, count=24)
    scored = {evaluation[k].astype(np.uint8).tobytes() for k in range(24)}
    drawn = [(stream[k]["mask"][0].numpy() > 0.5).astype(np.uint8).tobytes() for k in range(24)]
    assert len(set(drawn)) == 24 and len(scored) == 24
    assert not scored & set(drawn)


def test_corrupt_images_are_skipped_with_a_warning_and_counted(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    paths[1].write_bytes(b"\x89PNG truncated")
    stream = InpaintingStream(paths, 32, "box", seed=0)
    skipped = 0
    with pytest.warns(UserWarning, match="img1.png"):
        for k in range(6):
            skipped += stream[k]["skipped"]
    assert skipped >= 2  # visited twice in two epochs, skipped both times
    assert str(paths[1]) in stream.unreadable
    for p in paths:
        p.write_bytes(b"junk")
    with pytest.raises(ZooError, match="none of the 3 images"):
        InpaintingStream(paths, 32, "box", seed=0)[0]


def test_fixed_batch_is_identical_between_calls(tmp_path):
    paths = write_images(tmp_path / "imgs", 2)
    a = fixed_batch(paths, 32, 3, "free_form", seed=0)
    b = fixed_batch(paths, 32, 3, "free_form", seed=0)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert a["image"].shape == (3, 3, 32, 32)


def _coordinate_image(path, h=256, w=256):
    """R = column, G = row: where an output pixel came from, and how it was turned."""
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([cols, rows, np.zeros_like(rows)], -1).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _symmetry(x):
    """Signs of the R and G gradients along rows and columns: one of the 8 symmetries of the square."""
    r, g = x[0].numpy(), x[1].numpy()
    grads = [np.sign(np.mean(np.diff(c, axis=a))) for c in (r, g) for a in (0, 1)]
    return tuple(int(v) for v in grads)


def test_augmentation_shapes_ranges_determinism_and_variety(tmp_path):
    path = _coordinate_image(tmp_path / "coords.png")
    stream = InpaintingStream([path], 32, "box", seed=3)
    items = [stream[k]["image"] for k in range(160)]
    for x in items:
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1
    again = InpaintingStream([path], 32, "box", seed=3)
    assert all(torch.equal(items[k], again[k]["image"]) for k in (0, 17, 159))  # a function of (seed, k)
    other = InpaintingStream([path], 32, "box", seed=4)
    assert not all(torch.equal(items[k], other[k]["image"]) for k in range(5))
    # multi-scale: the span of source columns in a crop runs from ~32 px (native detail) to the whole side
    spans = [(x[0].max() - x[0].min()).item() * 127.5 for x in items]
    assert min(spans) < 64 and max(spans) > 200 and len(set(np.round(spans))) > 50
    # flips and 90-degree rotations: all 8 symmetries of the square occur; without rotations only 2
    assert len({_symmetry(x) for x in items}) == 8
    flips_only = InpaintingStream([path], 32, "box", seed=3, rotations=False)
    assert {_symmetry(flips_only[k]["image"]) for k in range(60)} == {(0, 1, 1, 0), (0, -1, 1, 0)}
    # min_crop: no crop smaller than asked for (here the whole shorter side: only the position varies)
    whole = InpaintingStream([path], 32, "box", seed=3, min_crop=10_000, rotations=False, flips=False)
    assert all(round((whole[k]["image"][1].max() - whole[k]["image"][1].min()).item() * 127.5) > 240
               for k in range(10))
    with pytest.raises(ZooError, match="min_crop"):
        InpaintingStream([path], 32, "box", min_crop=0)


def test_colour_augmentation_recolours_half_the_samples_and_keeps_crops_and_masks(tmp_path):
    rng = np.random.default_rng(0)
    colourful = tmp_path / "colourful.png"
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).resize((192, 192)).save(colourful)
    plain = InpaintingStream([colourful], 32, "free_form", seed=5)
    recoloured = InpaintingStream([colourful], 32, "free_form", seed=5, colour=True)
    changed = 0
    for k in range(40):
        a, b = plain[k], recoloured[k]
        assert torch.equal(a["mask"], b["mask"])  # colour draws from a generator of its own
        assert b["image"].shape == a["image"].shape and b["image"].min() >= -1 and b["image"].max() <= 1
        if not torch.equal(a["image"], b["image"]):
            changed += 1
            # same crop: the recoloured view's brightness pattern follows the original's
            corr = torch.corrcoef(torch.stack([a["image"].mean(0).flatten(), b["image"].mean(0).flatten()]))[0, 1]
            assert corr > 0.5
            assert (a["image"] - b["image"]).abs().mean() > 0.02
    assert 10 <= changed <= 30  # about half
    assert torch.equal(recoloured[7]["image"], InpaintingStream([colourful], 32, "free_form", seed=5,
                                                                colour=True)[7]["image"])
    # a grey photo has no hue or saturation to change
    grey = tmp_path / "grey.png"
    Image.fromarray(np.repeat(rng.integers(0, 256, (64, 64, 1), dtype=np.uint8), 3, axis=2)).save(grey)
    g_plain = InpaintingStream([grey], 32, "box", seed=1)
    g_col = InpaintingStream([grey], 32, "box", seed=1, colour=True)
    for k in range(10):
        assert torch.allclose(g_plain[k]["image"], g_col[k]["image"], atol=1e-3)


def test_fixed_view_is_the_centre_crop(tmp_path):
    path = _coordinate_image(tmp_path / "coords.png", 64, 128)
    x = InpaintingStream([path], 32, "box", augment=False)[0]["image"]
    columns = (x[0] + 1) * 127.5
    assert abs(columns.mean().item() - 63.5) < 2  # the middle of 128 columns
