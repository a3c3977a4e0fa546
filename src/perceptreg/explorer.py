"""A small web app to poke at a trained model: gallery, live attacks, latent slider, drawing.

    app = create_app("runs/demo")          # FastAPI app; `perceptreg explore RUN` serves it

The model and data are loaded once. All model work runs on one worker thread, one request
after another (an attack temporarily sets the model's flags, so two must not overlap), and
each request's work is bounded (at most MAX_STEPS PGD steps on one image, at most
MAX_GALLERY images), so no request holds the page for long. Nothing a request sends
reaches the file system.
"""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Literal

import torch
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from perceptreg import latent
from perceptreg.attacks import DEFAULT_EPS, DEFAULT_STEPS, PGD, check_target
from perceptreg.data import (
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    spread_over_classes,
    to_float,
)
from perceptreg.errors import PerceptregError
from perceptreg.runs import load_data, load_model

MAX_STEPS = 500
MAX_GALLERY = 64
MAX_UPLOAD_BYTES = 2_000_000
MAX_UPLOAD_PIXELS = 4096 * 4096
ALPHAS = latent.DEFAULT_ALPHAS

Eps = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Index = Annotated[int, Field(ge=0, le=10**9)]
ClassIndex = Annotated[int, Field(ge=0, le=10**6)]
LayerName = Annotated[str, Field(max_length=200)]


class AttackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: Index
    norm: Literal["linf", "l2"] = "linf"
    eps: Eps = DEFAULT_EPS
    steps: Steps = DEFAULT_STEPS
    target: ClassIndex | None = None
    layer: LayerName | None = None  # a run of `attach`: whose perception (default: the one served)


class EditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: Index
    target: ClassIndex
    eps: Eps = DEFAULT_EPS
    steps: Steps = DEFAULT_STEPS


def data_url(image: torch.Tensor) -> str:
    """A (C, H, W) float image in [0, 1] as a PNG data URL."""
    pixels = image.detach().float().clamp(0, 1).mul(255).round().byte().cpu()
    picture = Image.fromarray(pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Explorer:
    """The loaded run and the model work the endpoints ask for."""

    def __init__(self, run_dir: str | Path, device: str = "cpu", layer: str | None = None):
        self.run = Path(run_dir)
        self.device = device
        self.model = load_model(self.run, device=device, layer=layer)
        # A run of `attach`: every layer's perception can be shown, the chosen one first.
        layers = self.model.seen.layers if hasattr(self.model, "seen") else ()
        self.views = {None: self.model, **{name: self.model.seen.at(name) for name in layers}}
        self.test = load_data(self.run)[1]
        self.classes = self.test.classes
        # the gallery shows the classes in turn, not the data's order (often sorted by class)
        self.order = spread_over_classes(self.test.labels, len(self.test))
        # One intra-op thread: on one image, PyTorch's OpenMP team called from a thread other
        # than the main one made an attack 2.7x slower here (bench/explorer_latency.py).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perceptreg-model",
                                         initializer=torch.set_num_threads, initargs=(1,))

    def on_worker(self, work, *args):
        """Run ``work(*args)`` on the model's worker thread and wait for its result."""
        return self.worker.submit(work, *args).result()

    def image(self, index: int) -> torch.Tensor:
        if index >= len(self.test):
            raise HTTPException(422, f"index must lie in 0..{len(self.test) - 1}, got {index}")
        return to_float(self.test.images[index:index + 1]).to(self.device)

    def check_target(self, target: int) -> None:
        try:
            check_target(target, len(self.classes))
        except PerceptregError as err:
            raise HTTPException(422, str(err).replace("`", "")) from err

    @torch.no_grad()
    def view(self, layer: str | None):
        """The model whose perception to show: of ``layer``, for a run of `attach`."""
        if layer not in self.views:
            choices = ", ".join(name for name in self.views if name) or "none (this run has one latent)"
            raise HTTPException(422, f"layer must be one of {choices}, got {layer!r}")
        return self.views[layer]

    def describe(self, model, images: torch.Tensor) -> list[dict]:
        """Per image: the image, its perception, H's prediction, confidence and probabilities."""
        logits, _, recon = model(images)
        probabilities = logits.float().softmax(1)
        confidence, predicted = probabilities.max(1)
        return [{"image": data_url(x), "perception": data_url(p), "prediction": self.classes[k],
                 "confidence": c, "probabilities": probs}
                for x, p, k, c, probs in zip(images, recon, predicted.tolist(), confidence.tolist(),
                                             probabilities.tolist())]

    def gallery(self, offset: int, limit: int, layer: str | None = None) -> dict:
        model = self.view(layer)
        index = self.order[offset:offset + limit]
        images = to_float(self.test.images[index]).to(self.device)
        cards = self.on_worker(self.describe, model, images) if len(images) else []
        return {"total": len(self.test), "offset": offset,
                "items": [{"index": i, "label": self.classes[l], **card}
                          for i, l, card in zip(index.tolist(), self.test.labels[index].tolist(), cards)]}

    def attack(self, request: AttackRequest) -> dict:
        model = self.view(request.layer)
        x = self.image(request.index)
        label = self.test.labels[request.index:request.index + 1].to(self.device)
        targets = None
        if request.target is not None:
            self.check_target(request.target)
            targets = torch.tensor([request.target], device=self.device)
        attack = PGD(model, eps=request.eps, steps=request.steps, norm=request.norm)
        adversarial = self.on_worker(attack, x, label, targets)
        clean, adv = self.on_worker(self.describe, model, torch.cat([x, adversarial]))
        return {"label": self.classes[int(label)], "clean": clean, "adversarial": adv,
                "linf_distance": (adversarial - x).abs().max().item()}

    def edit(self, request: EditRequest) -> dict:
        if self.model.classifier is None:  # a layer of an attached model: no C to read a latent
            raise HTTPException(409, "latent walks need a run of `train`; this run attaches decoders to layers "
                                     "of a model, which have no classifier head of their own")
        x = self.image(request.index)
        self.check_target(request.target)
        latents, edited, readings, confidence = self.on_worker(self._walk, x, request)
        return {"target": self.classes[request.target],
                "frames": [{"alpha": a, "image": data_url(edited[0, i]),
                            "prediction": self.classes[int(readings["H(image)"][0, i])],
                            "confidence": confidence[0, i].item()} for i, a in enumerate(ALPHAS)]}

    def _walk(self, x: torch.Tensor, request: EditRequest):
        attack = PGD(self.model, eps=request.eps, steps=request.steps)
        _, direction = latent.toward(self.model, x, request.target, attack)
        latents, edited = latent.decode_along(self.model, x, direction, ALPHAS)
        return (latents, edited, *latent.read_edits(self.model, latents, edited))

    def perceive_upload(self, raw: bytes, layer: str | None = None) -> dict:
        model = self.view(layer)
        images = decode_upload(raw, model.input_shape).to(self.device)
        (result,) = self.on_worker(self.describe, model, images)
        return result


def decode_upload(raw: bytes, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Uploaded PNG/JPEG bytes -> a float image (1, C, H, W) for the model, or a 4xx.
    Decoded as every image file is (``data.decode_image``); drawn digits fitted as MNIST's."""
    if not raw:
        raise HTTPException(422, "the upload is empty; send a PNG or JPEG image")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the upload is {len(raw)} bytes; at most {MAX_UPLOAD_BYTES} are accepted")
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            kind = picture.format
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise HTTPException(422, f"the upload is not a readable PNG or JPEG image ({type(err).__name__})") from err
    if kind not in ("PNG", "JPEG"):
        raise HTTPException(415, f"only PNG and JPEG images are accepted, this is {kind}")
    try:
        image, _ = decode_image(raw, image_shape, fit_digit=True, max_pixels=MAX_UPLOAD_PIXELS)
    except ImageDecodeError as err:
        raise HTTPException(413 if isinstance(err, ImageTooLargeError) else 422, f"the upload: {err}") from err
    return to_float(image.unsqueeze(0))


def create_app(run_dir: str | Path, device: str = "cpu", layer: str | None = None) -> FastAPI:
    """The explorer app for one run folder."""
    explorer = Explorer(run_dir, device, layer)
    app = FastAPI(title=f"perceptreg explorer: {explorer.run.name}")

    @app.exception_handler(RequestValidationError)
    def invalid(request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input back, and a NaN in it cannot be written as
        # JSON (a 500); the field and the reason are what the caller needs.
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid")} for e in error.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})
    page = PAGE.replace("__TITLE__", f"perceptreg explorer: {explorer.run.resolve().name}")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict:
        model = explorer.model
        return {"run": explorer.run.name, "classes": list(explorer.classes), "test_images": len(explorer.test),
                "input_shape": list(model.input_shape), "max_steps": MAX_STEPS, "alphas": list(ALPHAS),
                "layer": getattr(model, "layer", None), "layers": [name for name in explorer.views if name],
                "latent_edits": model.classifier is not None}

    @app.get("/api/gallery")
    def gallery(offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                limit: Annotated[int, Query(ge=1, le=MAX_GALLERY)] = 24,
                layer: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        return explorer.gallery(offset, limit, layer)

    @app.post("/api/attack")
    def attack(request: AttackRequest) -> dict:
        return explorer.attack(request)

    @app.post("/api/edit")
    def edit(request: EditRequest) -> dict:
        return explorer.edit(request)

    @app.post("/api/perceive")
    def perceive(file: Annotated[UploadFile, File()],
                 layer: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        return explorer.perceive_upload(file.file.read(MAX_UPLOAD_BYTES + 1), layer)

    return app


PAGE = Path(__file__).with_name("explorer.html").read_text(encoding="utf-8")


def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Serve ``app`` with uvicorn on a daemon thread (for notebooks, tests and benchmarks).

    ``port=0`` picks a free port. Returns (server, base URL); stop with
    ``server.should_exit = True``.
    """
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the explorer did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://{host}:{bound}"
