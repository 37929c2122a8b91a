"""The FastAPI app: the page, ``/api/models``, ``/api/inpaint``, ``/api/health``; OpenAPI at ``/docs``.

Every error a client can cause answers 4xx with ``{"error": "one line"}``; a full queue answers 503 with
``Retry-After``; anything unexpected answers 500 with a one-line body (the traceback goes to the log only).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from data.masks import check_mask_for_image
from zoo.errors import ZooError
from zoo.serve.inputs import Limits, UploadError, read_binary, read_rgb
from zoo.serve.models import ServedModel
from zoo.serve.worker import InferenceWorker, QueueFull

STATIC = Path(__file__).parent / "static"
MAX_SEED = 2**31 - 1
MAX_VARIANTS = 8
log = logging.getLogger("zoo.serve")


class ModelInfo(BaseModel):
    name: str
    preset: str
    weights: str
    random_weights: bool
    license: str
    known_weights: list[str]
    native_size: int
    size_multiple: int
    parameters: int
    takes_seed: bool
    takes_sketch: bool
    paper: str


class Result(BaseModel):
    model: str
    weights: str
    random_weights: bool
    seed: int | None  # None: the model is deterministic
    variant: int
    seconds: float
    png: str  # base64


class InpaintResponse(BaseModel):
    width: int
    height: int
    hole_ratio: float
    warnings: list[str]
    results: list[Result]


class Health(BaseModel):
    status: str
    device: str
    models: list[str]
    queue_waiting: int
    queue_size: int


class ErrorBody(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorBody} for status in (413, 415, 422, 503)}


def error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyLimit:
    """Refuse request bodies over ``max_bytes``: by their Content-Length before reading, else while reading."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await error(413, self.message)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI's form parser passes HTTPExceptions on to the handlers
                raise StarletteHTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)

    @property
    def message(self) -> str:
        return f"the upload is larger than this server's limit of {self.max_bytes / 2**20:g} MB"


def _to_pixels(result: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [-1, 1] -> H x W x 3 uint8, rounded as ``zoo inpaint`` writes it."""
    return np.ascontiguousarray(((result[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy())


def _png_base64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=3)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def run_models(chosen: list[ServedModel], image: np.ndarray, mask: np.ndarray, sketch, seed: int,
               variants: int) -> list[tuple[ServedModel, int | None, int, float, np.ndarray]]:
    """Runs on the device thread: every chosen model on the same image and mask; nothing else (PNG encoding
    happens on the web server's threads, so the device goes on to the next request meanwhile)."""
    from data.datasets import to_tensor
    from zoo.api import inpaint

    image_t, mask_t = to_tensor(image)[None], torch.from_numpy(mask)[None, None]
    done = []
    for served in chosen:
        conditioning = {"sketch": sketch} if served.takes_sketch and sketch is not None else {}
        for k in range(variants if served.takes_seed else 1):
            if served.takes_seed:
                conditioning["seed"] = seed + k
            start = time.perf_counter()
            pixels = _to_pixels(inpaint(served.model, image_t, mask_t, **conditioning))
            done.append((served, seed + k if served.takes_seed else None, k, time.perf_counter() - start, pixels))
    return done


def _encode(done) -> list[Result]:
    return [Result(model=served.name, weights=served.weights, random_weights=served.random_weights, seed=seed,
                   variant=k, seconds=seconds, png=_png_base64(pixels)) for served, seed, k, seconds, pixels in done]


def create_app(served: dict[str, ServedModel], limits: Limits | None = None, device: str = "cpu",
               worker: InferenceWorker | None = None):
    limits = limits or Limits()
    worker = worker or InferenceWorker(device, limits.queue_size)
    infos = [ModelInfo(**m.info()) for m in served.values()]
    app = FastAPIOffline(title="inpaint-zoo", version="1", redoc_url=None,
                         description="Run several inpainting models on one image and mask, side by side.")
    app.state.worker = worker
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes)

    @app.exception_handler(UploadError)
    async def _upload(request, exc: UploadError):
        return error(exc.status, str(exc))

    @app.exception_handler(ZooError)
    async def _zoo(request, exc: ZooError):
        return error(422, str(exc))

    @app.exception_handler(QueueFull)
    async def _busy(request, exc: QueueFull):
        return error(503, str(exc), headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(torch.OutOfMemoryError)
    async def _out_of_memory(request, exc):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return error(413, f"the device ({device}) ran out of memory for this image; send a smaller one")

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        log.exception("unexpected error in %s", request.url.path)
        return error(500, f"internal error ({exc.__class__.__name__}); the server log has the details")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", response_model=Health)
    async def health():
        return Health(status="ok", device=device, models=list(served), queue_waiting=worker.waiting,
                      queue_size=worker.queue_size)

    @app.get("/api/models", response_model=list[ModelInfo])
    async def list_served_models():
        return infos

    @app.post("/api/inpaint", response_model=InpaintResponse, responses=ERRORS)
    async def inpaint(
        image: Annotated[UploadFile, File(description="the photo (PNG, JPEG, WebP, BMP, TIFF, GIF)")],
        mask: Annotated[UploadFile, File(description="same size as the image; white = hole unless hole=black")],
        models: Annotated[list[str], Form(description="names from /api/models (repeat, or comma-separated)")],
        seed: Annotated[int, Form(ge=0, le=MAX_SEED, description="noise seed of stochastic models (MAT)")] = 0,
        variants: Annotated[int, Form(ge=1, le=MAX_VARIANTS, description="completions per stochastic model: "
                                      "seeds seed, seed+1, ...")] = 1,
        hole: Annotated[Literal["white", "black"], Form(description="which colour marks holes in the mask")] = "white",
        sketch: Annotated[UploadFile | None, File(description="line drawing, same size, for sketch-guided "
                                                             "models")] = None,
    ):
        names = list(dict.fromkeys(n.strip() for text in models for n in text.split(",") if n.strip()))
        if not names:
            raise ZooError("choose at least one model; this server runs: " + ", ".join(served))
        for name in names:
            if name not in served:
                raise ZooError(f"unknown model {name[:80]!r}; this server runs: {', '.join(served)}")
        chosen = [served[n] for n in names]
        uploads = dict(image=await image.read(), mask=await mask.read(),
                       sketch=await sketch.read() if sketch is not None else None)
        image_name, mask_name = _filename(image, "image"), _filename(mask, "mask")
        image_np, mask_np, sketch_t, warning = await run_in_threadpool(
            _prepare, uploads, image_name, mask_name, hole, chosen, limits)
        future = worker.submit(run_models, chosen, image_np, mask_np, sketch_t, seed, variants)
        results = await run_in_threadpool(_encode, await asyncio.wrap_future(future))
        return InpaintResponse(width=image_np.shape[1], height=image_np.shape[0], hole_ratio=float(mask_np.mean()),
                               warnings=[warning] if warning else [], results=results)

    return app


def _filename(upload: UploadFile, fallback: str) -> str:
    return Path(upload.filename or fallback).name[:80] or fallback


def _prepare(uploads, image_name, mask_name, hole, chosen, limits):
    """Decode and check the uploads (a worker thread of the web server, not the device's)."""
    image = read_rgb(uploads["image"], f"image {image_name}", limits)
    mask = read_binary(uploads["mask"], f"mask {mask_name}", limits, white_is_one=hole == "white")
    warning = check_mask_for_image(mask, image.shape[:2], mask_name, image_name, hole=hole, hole_setting="hole={}")
    sketch = None
    if uploads["sketch"]:
        if not any(m.takes_sketch for m in chosen):
            raise ZooError("a sketch was sent but none of the chosen models takes one")
        drawing = read_binary(uploads["sketch"], "sketch", limits)
        if drawing.shape != mask.shape:
            raise ZooError(f"sketch is {drawing.shape[1]}x{drawing.shape[0]} but image {image_name} is "
                           f"{image.shape[1]}x{image.shape[0]}")
        if drawing.mean() > 0.5:  # dark lines on white paper: the lines are the minority colour either way
            drawing = 1 - drawing
        from zoo.mhtma import sketch_from_drawing

        sketch = sketch_from_drawing(drawing)[None, None]
    return image, mask, sketch, warning
