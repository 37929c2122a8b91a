"""`zoo serve`'s REST API through FastAPI's test client: every endpoint, every bad input, concurrency, a full
queue, a schema fuzz run; and the command's own start-up errors."""

import base64
import io
import pickle
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from PIL import Image

from zoo.cli import main
from zoo.serve import Limits, create_app, load_served_models, parse_model_spec
from zoo.serve.worker import InferenceWorker

H, W = 70, 90  # not a multiple of any model's size: zoo.inpaint pads and crops back


@pytest.fixture(scope="module")
def served():
    return load_served_models(["deepfill_v2,tiny", "mat,tiny", "mhtma_sketch,tiny"])


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served)) as c:
        yield c


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def photo(seed=0, h=H, w=W):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def box_mask(top=20, left=30, h=H, w=W, size=20):
    mask = np.zeros((h, w), np.uint8)
    mask[top : top + size, left : left + size + 10] = 255
    return mask


def post(client, image=None, mask=None, models="deepfill_v2", sketch=None, **fields):
    files = {"image": ("photo.png", png(photo()) if image is None else image),
             "mask": ("mask.png", png(box_mask()) if mask is None else mask)}
    if sketch is not None:
        files["sketch"] = ("sketch.png", sketch)
    return client.post("/api/inpaint", files=files, data={"models": models, **fields})


def decode(result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(result["png"]))).convert("RGB"))


def error_of(response, status):
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


# ---------------------------------------------------------------- endpoints


def test_health_and_models(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["models"] == ["deepfill_v2", "mat", "mhtma_sketch"]
    assert health["queue_waiting"] == 0 and health["queue_size"] == 32
    models = {m["name"]: m for m in client.get("/api/models").json()}
    assert set(models) == {"deepfill_v2", "mat", "mhtma_sketch"}
    assert all(m["random_weights"] and m["weights"] == "random (untrained)" for m in models.values())
    assert models["mat"]["takes_seed"] and not models["deepfill_v2"]["takes_seed"]
    assert models["mhtma_sketch"]["takes_sketch"] and not models["mat"]["takes_sketch"]
    assert (models["deepfill_v2"]["native_size"], models["mat"]["native_size"]) == (256, 512)
    assert models["mat"]["size_multiple"] == 64  # the tiny MAT is built for 64 px
    assert any("places512" in w for w in models["mat"]["known_weights"])


def test_page_and_docs_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
        assert asset in page.text
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text and "https://" not in docs.text.split("<body>")[0]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/inpaint", "/api/models", "/api/health"} <= set(paths)


def test_inpaint_several_models_keeps_known_pixels_and_seeds_pick_variants(client):
    image, mask = photo(), box_mask()
    response = post(client, image=png(image), mask=png(mask), models="deepfill_v2,mat", seed=5, variants=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (W, H) and body["warnings"] == []
    assert body["hole_ratio"] == pytest.approx((mask > 0).mean())
    got = [(r["model"], r["seed"], r["variant"]) for r in body["results"]]
    assert got == [("deepfill_v2", None, 0), ("mat", 5, 0), ("mat", 6, 1)]  # deterministic models run once
    hole = mask > 0
    filled = [decode(r) for r in body["results"]]
    for result, out in zip(body["results"], filled):
        assert out.shape == image.shape and result["seconds"] > 0
        np.testing.assert_array_equal(out[~hole], image[~hole])
        assert (out[hole] != image[hole]).any()
    assert (filled[1][hole] != filled[2][hole]).any()  # two seeds, two completions
    again = post(client, image=png(image), mask=png(mask), models=["mat"], seed=5).json()["results"]
    np.testing.assert_array_equal(decode(again[0]), filled[1])  # the same seed, the same completion


def test_black_holes_and_a_mostly_hole_mask_warns(client):
    mask = box_mask()
    white = post(client, mask=png(mask)).json()["results"][0]
    black = post(client, mask=png(255 - mask), hole="black").json()["results"][0]
    np.testing.assert_array_equal(decode(white), decode(black))
    inverted = post(client, mask=png(255 - mask))  # most of the image marked as hole: served, with a warning
    assert inverted.status_code == 200
    assert "if holes are black use hole=black" in inverted.json()["warnings"][0]


def test_sketch_reaches_sketch_models_thinned(client, served, monkeypatch):
    # Random weights wash a one-pixel line out before the output, so watch what the generator receives.
    model = served["mhtma_sketch"].model
    received = []
    forward = model.forward

    def recording_forward(*args, **kwargs):
        received.append(kwargs.get("sketch"))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", recording_forward)
    drawing = np.zeros((H, W), np.uint8)
    drawing[29:32, 20:70] = 255  # a 3-px line across the hole
    assert post(client, models="mhtma_sketch", sketch=png(drawing)).status_code == 200
    assert post(client, models="mhtma_sketch", sketch=png(255 - drawing)).status_code == 200  # dark on white
    assert post(client, models="mhtma_sketch").status_code == 200
    white, black, none = received
    assert white.shape == (1, 1, 72, 92)  # padded with the image to the model's multiple of 4
    lines = white[0, 0, :H, :W].numpy()
    assert 40 <= lines.sum() <= 50 and lines.sum(axis=0).max() == 1  # thinned to one pixel
    assert set(np.nonzero(lines)[0]) <= {29, 30, 31}
    np.testing.assert_array_equal(black.numpy(), white.numpy())
    assert none is None
    assert "none of the chosen models takes one" in error_of(post(client, sketch=png(drawing)), 422)
    small = np.zeros((10, 10), np.uint8)
    assert "sketch is 10x10 but image" in error_of(post(client, models="mhtma_sketch", sketch=png(small)), 422)


# ---------------------------------------------------------------- bad input


def png_header_only(width, height) -> bytes:
    """A valid PNG signature and header claiming ``width x height`` with one tiny data chunk: a bomb."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("case, status, message", [
    ("not_an_image", 415, "image photo.png is not a readable image"),
    ("truncated_png", 415, "is not a readable image"),
    ("empty_file", 422, "image photo.png is empty"),
    ("mask_not_an_image", 415, "mask mask.png is not a readable image"),
    ("wrong_size_mask", 422, "mask mask.png is 30x10 but image photo.png is 90x70"),
    ("empty_mask", 422, "mask mask.png marks no pixel as hole (holes are white with hole=white; is the polarity"),
    ("full_mask", 422, "mask mask.png marks every pixel as hole"),
    ("unknown_model", 422, "unknown model 'nope'; this server runs: deepfill_v2, mat, mhtma_sketch"),
    ("path_as_model", 422, "unknown model '/etc/passwd'"),
    ("no_model", 422, "choose at least one model"),
    ("huge_header", 413, "image photo.png is 8000x8000 pixels; this server takes at most 4096x4096"),
    ("bomb", 413, "image photo.png is too large to decode safely (decompression bomb?)"),
    ("negative_seed", 422, "seed:"),
    ("too_many_variants", 422, "variants:"),
    ("bad_hole", 422, "hole:"),
])
def test_bad_input_is_one_json_line(client, case, status, message):
    kwargs = {
        "not_an_image": dict(image=b"GIF89a? not really"),
        "truncated_png": dict(image=png(photo())[:200]),
        "empty_file": dict(image=b""),
        "mask_not_an_image": dict(mask=b"\x00\x01\x02"),
        "wrong_size_mask": dict(mask=png(np.full((10, 30), 255))),
        "empty_mask": dict(mask=png(np.zeros((H, W)))),
        "full_mask": dict(mask=png(np.full((H, W), 255))),
        "unknown_model": dict(models="nope"),
        "path_as_model": dict(models="/etc/passwd"),
        "no_model": dict(models=" , "),
        "huge_header": dict(image=png_header_only(8000, 8000)),
        "bomb": dict(image=png_header_only(100_000, 100_000)),
        "negative_seed": dict(seed=-1),
        "too_many_variants": dict(variants=99),
        "bad_hole": dict(hole="grey"),
    }[case]
    assert message in error_of(post(client, **kwargs), status)


def test_missing_fields_and_unknown_routes_answer_json(client):
    assert "image: Field required" in error_of(client.post("/api/inpaint", data={"models": "mat"}), 422)
    assert error_of(client.get("/api/nothing"), 404) == "Not Found"


def test_a_model_name_never_opens_a_file(client, tmp_path):
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    trap = tmp_path / "evil.pkl"
    trap.write_bytes(pickle.dumps(Trap()))
    for name in (str(trap), f"deepfill_v2,checkpoint={trap}", f"mat={trap}", "../" * 8 + str(trap)):
        assert "unknown model" in error_of(post(client, models=name), 422)
    assert not marker.exists()


def test_upload_limits(served):
    with TestClient(create_app(served, Limits(max_upload_bytes=50_000, max_side=64))) as small:
        big = png(np.random.default_rng(1).integers(0, 256, (120, 120, 3)))  # ~43 kB PNG of 120 x 120
        assert "is 120x120 pixels; this server takes at most 64x64" in error_of(
            post(small, image=big, mask=png(box_mask(h=120, w=120))), 413)
        huge = b"\x89PNG" + bytes(60_000)
        assert "larger than this server's limit of" in error_of(post(small, image=huge), 413)

        def chunks():  # no Content-Length: the limit holds while the body streams in
            yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(40):
                yield bytes(4096)
        response = small.post("/api/inpaint", content=chunks(),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert "larger than this server's limit of" in error_of(response, 413)
        assert small.get("/api/health").status_code == 200  # and it keeps serving


# ---------------------------------------------------------------- concurrency and the queue


def test_twenty_parallel_requests_are_all_answered_with_their_own_results(client):
    image = photo(3)

    def one(k):
        mask = box_mask(top=5 + 2 * k, left=5 + k)
        models = "deepfill_v2,mat" if k % 4 == 0 else "deepfill_v2"  # MAT is the slower one
        response = post(client, image=png(image), mask=png(mask), models=models, seed=k)
        return k, mask, response

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert [r.status_code for _, _, r in answers] == [200] * 20
    for k, mask, response in answers:
        hole = mask > 0
        for result in response.json()["results"]:
            out = decode(result)
            np.testing.assert_array_equal(out[~hole], image[~hole])  # each answer belongs to its own request
            assert result["seed"] in (None, k)


def test_a_full_queue_answers_503_with_retry_after_and_recovers(served):
    worker = InferenceWorker("cpu", queue_size=1)
    started, release = threading.Event(), threading.Event()

    def block():
        started.set()
        release.wait(30)

    try:
        with TestClient(create_app(served, Limits(queue_size=1), worker=worker)) as c:
            running = worker.submit(block)
            assert started.wait(10)
            waiting = worker.submit(lambda: None)  # the one place in the queue is taken
            assert c.get("/api/health").json()["queue_waiting"] == 1
            busy = post(c)
            assert "the inference queue is full" in error_of(busy, 503)
            assert int(busy.headers["retry-after"]) >= 1
            release.set()
            running.result(10), waiting.result(10)
            assert post(c).status_code == 200
    finally:
        release.set()
        worker.stop()


# ---------------------------------------------------------------- schema fuzzing


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schema_fuzz_finds_no_server_error(served, mode):
    """Requests generated from /openapi.json, valid and invalid, for every operation: none answers 5xx."""
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(served))
    seen = set()

    @given(case=schema.as_strategy(schemathesis.GenerationMode(mode)))
    @settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def fuzz(case):
        seen.add(case.operation.label)
        case.call_and_validate(checks=[not_a_server_error])

    fuzz()
    # Negative cases exist only where there are inputs to break: the POST.
    assert seen == ({"POST /api/inpaint"} if mode == "negative" else
                    {"POST /api/inpaint", "GET /api/models", "GET /api/health"})


# ---------------------------------------------------------------- the command


def test_model_specs():
    spec = parse_model_spec("mat=mat.places512,label=big,width=32,tiny,token_resolution=16")
    assert (spec.preset, spec.checkpoint, spec.name, spec.width, spec.tiny) == ("mat", "mat.places512", "big", 32, True)
    assert spec.overrides == {"token_resolution": 16}
    assert parse_model_spec("mhtma,checkpoint=runs/x").checkpoint == "runs/x"


def test_served_checkpoints_from_a_file_and_a_run_directory(tmp_path):
    import torch

    import zoo

    state = zoo.create_model("deepfill_v2", cnum=8).state_dict()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "g.pt")
    torch.save(state, tmp_path / "run" / "checkpoints" / "step_0000007.pt")
    served = load_served_models([f"deepfill_v2={tmp_path / 'g.pt'},width=8",
                                 f"deepfill_v2,checkpoint={tmp_path / 'run'},width=8,label=run"])
    for m in served.values():
        assert torch.equal(m.model.state_dict()["coarse.conv1.conv.weight"], state["coarse.conv1.conv.weight"])
    with TestClient(create_app(served)) as c:
        info = {m["name"]: m for m in c.get("/api/models").json()}
        assert info["deepfill_v2"]["weights"] == str(tmp_path / "g.pt") and not info["deepfill_v2"]["random_weights"]
        assert info["run"]["license"].startswith("unknown")
        results = post(c, models="deepfill_v2,run").json()["results"]
        np.testing.assert_array_equal(decode(results[0]), decode(results[1]))  # the same weights either way


@pytest.mark.parametrize("argv, message", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "deepfill_v2,checkpoint=/no/such.pt"], "does not exist"),
    (["--model", "deepfill_v2,tiny", "--model", "deepfill_v2"], "both named 'deepfill_v2': give one a label"),
    (["--model", "deepfill_v2,width=x"], "width must be a positive integer"),
    (["--model", "deepfill_v2,nonsense"], "is not KEY=VALUE"),
    (["--model", "deepfill_v2,tiny", "--queue-size", "0"], "must be positive"),
])
def test_bad_serve_settings_are_one_line(capsys, argv, message):
    assert main(["serve", "--port", "0", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_public_host_warns_before_anything_else(capsys):
    # A bad model stops the command before it binds, so nothing listens on every interface here.
    assert main(["serve", "--host", "0.0.0.0", "--model", "nope"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: --host 0.0.0.0 serves every machine"), lines
    assert lines[1].startswith("error: unknown model 'nope'")
