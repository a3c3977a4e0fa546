"""A small web app to poke at trained models: gallery, live attacks, latent slider, drawing,
a map of the latents, and several runs side by side.

    app = create_app("runs/demo")                      # FastAPI app; `perceptreg explore RUN` serves it
    app = create_app(["runs/joint", "runs/post-hoc"])  # the same attacks through each run's perception

The models and data are loaded once. All model work runs on one thread behind a bounded
queue (``explorer_server.ModelQueue``), and each request's work is bounded (at most
MAX_STEPS PGD steps on one image, at most MAX_GALLERY images), so no request holds the page
for long. Nothing a request sends reaches the file system.
"""

from __future__ import annotations

import contextlib
import html
from pathlib import Path
from typing import Annotated, Literal, Sequence

import torch
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from perceptreg.adversarial.attacks import DEFAULT_STEPS, AttackSettings, check_target
from perceptreg.adversarial.defaults import NORMS
from perceptreg.core.errors import NotAvailableError, PerceptregError
from perceptreg.data import to_float
from perceptreg.display import data_uri, png_bytes
from perceptreg.edits import latent
from perceptreg.runs import Run
from perceptreg.views.explorer_upload import MAX_UPLOAD_BYTES, decode_upload
from perceptreg.views.explorer_server import ModelQueue, RequestGuard, allowed_hosts, answer_errors, serve_in_background
from perceptreg.views.explorer_saved import saved_routes
from perceptreg.views.explorer_survey import LatentMap, Scores, Show, Sort, needs_scores, sample, select

MAX_STEPS = 500
MAX_GALLERY = 64
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64_000  # the upload and its multipart headers
ALPHAS = latent.DEFAULT_ALPHAS
SEEN = ("perception", "prediction", "confidence", "error")  # what a compared run adds to an image's card
__all__ = ["Explorer", "create_app", "serve_in_background"]

Eps = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
Index = Annotated[int, Field(ge=0, le=10**9)]
ClassIndex = Annotated[int, Field(ge=0, le=10**6)]
LayerName = Annotated[str, Field(max_length=200)]


# strict: true is no step count, 1.5 no index, "5" no number (lax pydantic ran true as 1 step)
REQUEST = ConfigDict(extra="forbid", strict=True)


class AttackRequest(BaseModel):
    model_config = REQUEST
    index: Index
    norm: Literal["linf", "l2"] = "linf"
    eps: Eps | None = None  # None: the radius of the run's images (Explorer.eps)
    steps: Steps = DEFAULT_STEPS
    target: ClassIndex | None = None
    layer: LayerName | None = None  # a run of `attach`: whose perception (default: the one served)


class EditRequest(BaseModel):
    model_config = REQUEST
    index: Index
    target: ClassIndex
    eps: Eps | None = None  # None: the radius of the run's images (Explorer.eps)
    steps: Steps = DEFAULT_STEPS


def data_url(image: torch.Tensor) -> str:
    """A (C, H, W) float image in [0, 1] as a PNG data URL."""
    pixels = image.detach().float().clamp(0, 1).mul(255).round().byte().cpu()
    picture = Image.fromarray(pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy())
    return data_uri(png_bytes(picture))


def amplified(difference: torch.Tensor) -> torch.Tensor:
    """x_adv - x scaled so its largest change reaches black or white; grey is no change."""
    return 0.5 + 0.5 * difference / difference.abs().max().clamp(min=1e-12)


def layer_views(model) -> dict:
    """``model`` by the layer it is seen through: a run of `attach`'s every layer, and under
    None the layer it was opened at; a run of `train` has only None, its one latent z."""
    layers = model.seen.layers if hasattr(model, "seen") else ()
    return {None: model, **{name: model.seen.at(name) for name in layers}}


class Explorer:
    """The loaded runs and the model work the endpoints ask for. The first run's test set
    is the gallery; further runs are compared with it image by image, each at the layer
    shown where it has layers (a run of `attach`)."""

    def __init__(self, opened: Sequence[Run], device: str = "cpu", layer: str | None = None):
        self.run, self.device = opened[0], device
        self.model = self.run.model(device, layer)
        self.views = layer_views(self.model)  # a run of `attach`: every layer's perception, the chosen one first
        names = [run.name for run in opened]
        if len(set(names)) < len(names):  # runs/a/run and runs/b/run: the whole paths tell them apart
            names = [str(run.path) for run in opened]
        self.name = names[0]
        self.compared = {name: layer_views(run.model(device)) for name, run in zip(names[1:], opened[1:])}
        for name, views in self.compared.items():
            model = views[None]
            if (model.input_shape, model.num_classes) != (self.model.input_shape, self.model.num_classes):
                raise PerceptregError(f"runs to compare must take images of one shape into the same classes: "
                                      f"{self.name} takes {self.model.input_shape} into {self.model.num_classes}, "
                                      f"{name} takes {model.input_shape} into {model.num_classes}")
        self.test = self.run.data()[1]
        self.classes = self.test.classes
        # what a request without eps gets, per norm: L2 has its own radius
        self.eps = {norm: self.settings(None, norm=norm).eps for norm in NORMS}
        self.map_index = sample(len(self.test))  # the same images on every run's map
        self._scores: dict[torch.nn.Module, Scores] = {}  # per model, computed on first use
        self._maps: dict[torch.nn.Module, LatentMap] = {}
        self.queue = ModelQueue([*self.views.values(), *(m for views in self.compared.values() for m in views.values())])

    def image(self, index: int) -> torch.Tensor:
        if index >= len(self.test):
            raise PerceptregError(f"index must lie in 0..{len(self.test) - 1}, got {index}")
        return to_float(self.test.images[index:index + 1]).to(self.device)

    def settings(self, eps: float | None, steps: int = DEFAULT_STEPS, norm: str = "linf") -> AttackSettings:
        """A request's attack; no eps: the radius of the run's images in ``norm`` (an edit's: L-inf)."""
        return AttackSettings(eps, steps, norm).for_images(self.run.config.dataset, self.model.input_shape)

    def check_target(self, target: int) -> None:
        try:
            check_target(target, len(self.classes))
        except PerceptregError as err:  # said without the library's backquotes: a request has no flags
            raise PerceptregError(str(err).replace("`", "")) from err

    def view(self, layer: str | None):
        """The model whose perception to show: of ``layer``, for a run of `attach`."""
        if layer not in self.views:
            choices = ", ".join(name for name in self.views if name) or "none (this run has one latent)"
            raise PerceptregError(f"layer must be one of {choices}, got {layer!r}")
        return self.views[layer]

    def others(self, layer: str | None) -> dict:
        """Each compared run's model at the layer shown (``layer``, else the one served): a run
        of `train` shows its one latent whatever the layer; a run of `attach` that lacks the
        layer gets, in place of a model, the sentence that says so."""
        shown, models = layer or getattr(self.model, "layer", None), {}
        for name, views in self.compared.items():
            if shown is None or len(views) == 1:  # the first run, or this one, has one latent
                models[name] = views[None]
            elif shown in views:
                models[name] = views[shown]
            else:
                models[name] = f"{name} has no layer {shown} (its layers: {', '.join(n for n in views if n)})"
        return models

    def scores(self, model) -> Scores:
        """``model``'s reading of every test image, computed on first use (on the model thread)."""
        if model not in self._scores:
            self._scores[model] = Scores.of(model, self.test.images, self.device)
        return self._scores[model]

    def latent_map(self, model) -> LatentMap:
        """``model``'s map of z, computed on first use (on the model thread)."""
        if model not in self._maps:
            self._maps[model] = LatentMap.of(model, self.test.images, self.map_index, self.device)
        return self._maps[model]

    @torch.no_grad()
    def describe(self, model, images: torch.Tensor) -> list[dict]:
        """Per image: the image, its perception, H's prediction, confidence and probabilities."""
        logits, _, recon = model(images)
        probabilities = logits.float().softmax(1)
        confidence, predicted = probabilities.max(1)
        error = (recon.float() - images).pow(2).flatten(1).mean(1)
        return [{"image": data_url(x), "perception": data_url(p), "prediction": self.classes[k],
                 "confidence": c, "probabilities": probs, "error": e}
                for x, p, k, c, probs, e in zip(images, recon, predicted.tolist(), confidence.tolist(),
                                                probabilities.tolist(), error.tolist())]

    def readings(self, images: torch.Tensor, layer: str | None = None) -> list[dict]:
        """Per image, the served run's ``describe`` (of ``layer``), and under "compared" each
        compared run's perception and answer: every section shows every run."""
        if not len(images):
            return []
        model = self.view(layer)
        seen = {name: other if isinstance(other, str) else self.describe(other, images)
                for name, other in self.others(layer).items()}
        return [{**card, "compared": [{"run": name, "missing": cards} if isinstance(cards, str)
                                      else {"run": name, **{key: cards[i][key] for key in SEEN}}
                                      for name, cards in seen.items()]}
                for i, card in enumerate(self.describe(model, images))]

    def gallery(self, offset: int, limit: int, layer: str | None = None, label: int | None = None,
                show: Show = "all", sort: Sort = "classes") -> dict:
        model = self.view(layer)
        if label is not None:
            self.check_target(label)
        scores = self.scores(model) if needs_scores(show, sort) else None
        chosen = select(self.test.labels, label, show, sort, scores)
        index = chosen[offset:offset + limit]
        cards = self.readings(to_float(self.test.images[index]).to(self.device), layer)
        return {"total": len(chosen), "offset": offset,
                "items": [{"index": i, "label": self.classes[l], **card}
                          for i, l, card in zip(index.tolist(), self.test.labels[index].tolist(), cards)]}

    def item(self, index: int, layer: str | None = None) -> dict:
        """One test image as a gallery card shows it (a point clicked on the map)."""
        (card,) = self.readings(self.image(index), layer)
        return {"index": index, "label": self.classes[int(self.test.labels[index])], **card}

    def map(self, layer: str | None = None) -> dict:
        """Each run's map of z, of the same test images (a seeded sample of a large test set)."""
        runs = {self.name: self.view(layer), **self.others(layer)}
        maps = {name: model if isinstance(model, str) else self.latent_map(model) for name, model in runs.items()}
        return {"total": len(self.test), "index": self.map_index.tolist(),
                "labels": self.test.labels[self.map_index].tolist(),
                "maps": [{"run": name, "missing": m} if isinstance(m, str) else
                         {"run": name, "points": m.points.tolist(), "predictions": m.predictions.tolist()}
                         for name, m in maps.items()]}

    def attack(self, request: AttackRequest) -> dict:
        model = self.view(request.layer)
        x = self.image(request.index)
        label = self.test.labels[request.index:request.index + 1].to(self.device)
        targets = None
        if request.target is not None:
            self.check_target(request.target)
            targets = torch.tensor([request.target], device=self.device)
        settings = self.settings(request.eps, request.steps, request.norm)
        result = self._attack_on(model, x, label, targets, settings)
        compared = [{"run": name, "missing": other} if isinstance(other, str) else
                    {"run": name, **self._attack_on(other, x, label, targets, settings)}
                    for name, other in self.others(request.layer).items()]
        return {"label": self.classes[int(label)], "run": self.name, "eps": settings.eps, **result, "compared": compared}

    def _attack_on(self, model, x: torch.Tensor, label, targets, settings: AttackSettings) -> dict:
        """One run's attack of x: its images, perceptions, distances, and its path on its own map."""
        with latents_seen(model) as path:
            adversarial = settings.build(model)(x, label, targets)
        clean, adv = self.describe(model, torch.cat([x, adversarial]))
        with torch.no_grad():
            ends = model(torch.cat([x, adversarial])).z
        steps = self.latent_map(model).project(torch.cat([ends[:1], *path, ends[1:]]))
        difference = adversarial - x
        return {"clean": clean, "adversarial": adv, "difference": data_url(amplified(difference)[0]),
                "linf_distance": difference.abs().max().item(), "l2_distance": difference.norm().item(),
                "path": steps.tolist()}

    def edit(self, request: EditRequest) -> dict:
        if self.model.classifier is None:  # a layer of an attached model: no C to read a latent
            raise NotAvailableError("latent walks need a run of `train`; this run attaches decoders to layers "
                                    "of a model, which have no classifier head of their own")
        x = self.image(request.index)
        self.check_target(request.target)
        walks = [{"run": name, "frames": self._walk(views[None], x, request)}  # each run along its own direction
                 for name, views in self.compared.items() if views[None].classifier is not None]
        return {"target": self.classes[request.target], "image": data_url(x[0]),
                "frames": self._walk(self.model, x, request), "compared": walks}

    def _walk(self, model, x: torch.Tensor, request: EditRequest) -> list[dict]:
        attack = self.settings(request.eps, request.steps).build(model)
        _, direction = latent.toward(model, x, request.target, attack)
        latents, edited = latent.decode_along(model, x, direction, ALPHAS)
        readings, confidence = latent.read_edits(model, latents, edited)
        return [{"alpha": a, "image": data_url(edited[0, i]), "confidence": confidence[0, i].item(),
                 "prediction": self.classes[int(readings["H(image)"][0, i])]} for i, a in enumerate(ALPHAS)]

    def perceive(self, images: torch.Tensor, layer: str | None = None) -> dict:
        (result,) = self.readings(images.to(self.device), layer)
        return result


@contextlib.contextmanager
def latents_seen(model):
    """Records z of every image F sees (an attack's steps: its path through z). The encoder
    of an attached layer is not run by the attack: nothing is recorded."""
    path: list[torch.Tensor] = []
    handle = model.encoder.register_forward_hook(lambda module, inputs, z: path.append(z.detach()))
    try:
        yield path
    finally:
        handle.remove()


def create_app(opened: Run | Sequence[Run], device: str = "cpu", layer: str | None = None,
               hosts: tuple[str, ...] | None = allowed_hosts("127.0.0.1")) -> FastAPI:
    """The explorer app for one run (``open_run``), or several to compare (the first one's
    test set). ``hosts``: the Host names it answers (``explorer_server.allowed_hosts``); None: any."""
    explorer = Explorer([opened] if isinstance(opened, Run) else list(opened), device, layer)
    # /docs and /redoc load their scripts from a CDN: blank offline, so not served.
    app = FastAPI(title=f"perceptreg explorer: {explorer.name}", docs_url=None, redoc_url=None)
    app.add_middleware(RequestGuard, hosts=hosts, max_body=MAX_BODY_BYTES)
    app.state.explorer = explorer
    answer_errors(app)  # the explorer's errors and malformed requests, as 4xx
    title = f"perceptreg explorer: {' vs '.join([explorer.name, *explorer.compared])}"
    page = PAGE.replace("__TITLE__", html.escape(title))  # run paths are the user's: <, & and " too

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/explorer.js")
    async def script() -> Response:
        return Response(SCRIPT, media_type="text/javascript")

    @app.get("/api/info")
    async def info() -> dict:
        model = explorer.model
        return {"run": explorer.name, "classes": list(explorer.classes), "test_images": len(explorer.test),
                "input_shape": list(model.input_shape), "max_steps": MAX_STEPS, "alphas": list(ALPHAS), "eps": explorer.eps,
                "layer": getattr(model, "layer", None), "layers": [name for name in explorer.views if name],
                "latent_edits": model.classifier is not None, "compared": list(explorer.compared),
                "decoder_loss": explorer.run.config.decoder_loss.describe()}

    @app.get("/api/queue")
    async def place(ticket: Annotated[str, Query(max_length=100)]) -> dict:
        """Where the request sent with `X-Ticket: ticket` stands: requests ahead of it, 0 when
        it runs, null when it is not in the queue."""
        return {"ahead": explorer.queue.ahead(ticket)}

    model_routes(app, explorer)
    saved_routes(app, explorer)  # what perceive and invert wrote: measures, spread, inversion
    return app


def model_routes(app: FastAPI, explorer: Explorer) -> None:
    """The endpoints that run the model: each request's work waits its turn in the queue."""
    queue = explorer.queue

    @app.get("/api/gallery")
    async def gallery(request: Request, offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
                      limit: Annotated[int, Query(ge=1, le=MAX_GALLERY)] = 24,
                      layer: Annotated[str | None, Query(max_length=200)] = None,
                      label: Annotated[int | None, Query(ge=0, le=10**6)] = None,
                      show: Show = "all", sort: Sort = "classes") -> dict:
        return await queue.run(request, explorer.gallery, offset, limit, layer, label, show, sort)

    @app.get("/api/image")
    async def image(request: Request, index: Annotated[int, Query(ge=0, le=10**9)],
                    layer: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        return await queue.run(request, explorer.item, index, layer)

    @app.get("/api/map")
    async def latent_map(request: Request, layer: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        return await queue.run(request, explorer.map, layer)

    @app.post("/api/attack")
    async def attack(request: Request, body: AttackRequest) -> dict:
        return await queue.run(request, explorer.attack, body)

    @app.post("/api/edit")
    async def edit(request: Request, body: EditRequest) -> dict:
        return await queue.run(request, explorer.edit, body)

    @app.post("/api/perceive")
    async def perceive(request: Request, file: Annotated[UploadFile, File()],
                       layer: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        images = decode_upload(await file.read(MAX_UPLOAD_BYTES + 1), file.size, explorer.model.input_shape)
        return await queue.run(request, explorer.perceive, images, layer)


PAGE = Path(__file__).with_name("explorer.html").read_text(encoding="utf-8")
SCRIPT = Path(__file__).with_name("explorer.js").read_text(encoding="utf-8")
