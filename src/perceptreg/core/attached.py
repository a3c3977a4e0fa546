"""Perceive a model you already have, at any layer: frozen model, one decoder per layer.

    >>> seen = attach(net, layers=["block1", "block2", "fc1"], input_shape=(1, 28, 28))
    >>> fit_decoders(seen, train_data, epochs=10)   # the net stays frozen, bit for bit
    >>> seen.perceive(images, layer="block2")       # D_block2(activation of images at block2)

``net`` is any ``nn.Module`` that maps images (B, C, H, W) to logits (B, classes). Its
activations are read with forward hooks that exist only during one forward call. Images are
pixels in [0, 1]; ``normalize=(mean, std)`` applies the model's input normalization inside,
so attacks, datasets and figures keep working in pixel space. ``fine_tune`` instead trains
the model itself with the paper's objective, CE + lam * reconstruction error.
"""

from __future__ import annotations

import contextlib
import difflib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from perceptreg.core.decoders import check_decoder, seeded_decoder
from perceptreg.core.errors import PerceptregError
from perceptreg.core.models import (
    PerceptionNet,
    PerceptionOutput,
    evaluating,
    init_output_bias,
    parameter_count,
)

Select = Callable[[str, object], torch.Tensor]


class AttachedModel(nn.Module):
    """A frozen classifier plus one decoder per chosen layer; build it with ``attach``.

    ``forward``/``classify``: logits of pixels in [0, 1]; ``features``: logits and every
    layer's activation from one forward; ``perceive``: D_layer(activation). The model keeps
    ``requires_grad`` off and eval mode whatever ``train()`` says (only the decoders follow),
    so its weights and batch-norm statistics never change (``fine_tune`` lifts this).
    ``release()`` (or the end of ``with attach(...) as seen:``) hands the model back with its
    own ``requires_grad`` flags and train/eval modes.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], normalize, select: Select | None):
        super().__init__()
        self.model, self.input_shape, self.select = model, input_shape, select
        mean, std = (None, None) if normalize is None else (
            _per_channel("normalize", v, input_shape[0]).view(1, -1, 1, 1) for v in normalize)
        if std is not None and not bool((std > 0).all() and std.isfinite().all() and mean.isfinite().all()):
            # inf or NaN here made every activation NaN, and every measure with it
            raise PerceptregError(f"`normalize`: every mean must be finite and every std finite and > 0, got "
                                  f"{mean.flatten().tolist()}, {std.flatten().tolist()}")
        self.register_buffer("mean", mean)  # (1, C, 1, 1), or None: no normalization
        self.register_buffer("std", std)
        self.decoders = nn.ModuleDict()  # keyed by _key(layer name)
        self.layers: tuple[str, ...] = ()  # shallow to deep, the order they run in forward
        self.activation_shapes: dict[str, tuple[int, ...]] = {}
        self.num_classes = 0
        self._modules_by_name: dict[str, nn.Module] = {}
        self._awaiting_bias: set[str] = set()  # built decoders whose bias waits for a pixel mean
        # how the built decoders were made, so a saved run rebuilds them (runs.saving)
        self.seed, self.decoder_params, self.given_decoders = 0, None, frozenset()
        self._tuning = False
        # the user's own settings, given back by release(): parameters they froze stay frozen
        self._user_requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        self._user_modes = {name: m.training for name, m in model.named_modules()}

    def __repr__(self) -> str:
        """One line, not nn.Module's dump of every submodule (thousands of characters in Jupyter):
        the model, its input, and each layer's activation shape and decoder size."""
        layers = ", ".join(f"{d['layer']} {'x'.join(map(str, d['activation_shape']))} ({d['decoder_parameters']:,} "
                           f"decoder params)" for d in self.describe())
        return (f"AttachedModel({type(self.model).__name__}, input {'x'.join(map(str, self.input_shape))}, "
                f"{self.num_classes} classes; layers: {layers or 'none'})")

    def train(self, mode: bool = True) -> AttachedModel:
        super().train(mode)
        if not self._tuning:
            self.model.eval()  # frozen: batch-norm statistics and dropout stay as they are
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) of pixels x in [0, 1]: the model on the normalized x."""
        return self.model(self._normalized(x))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def features(self, x: torch.Tensor, layers: Sequence[str] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the activations of ``layers`` (default all), from one forward."""
        names = self.chosen_layers(layers)
        with _capture({n: self._modules_by_name[n] for n in names}, self.select) as acts:
            logits = self(x)
        missing = [n for n in names if n not in acts]
        if missing:
            raise PerceptregError(f"`layers`: {', '.join(missing)} did not run in this forward "
                                  f"(data-dependent control flow?); pick layers that always run")
        return logits, acts

    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features(x)[1]

    def perceive(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        """D_layer(activation of x at layer), images (B, C, H, W); layer None = the deepest."""
        name = self.chosen_layers([layer] if layer is not None else [self.layers[-1]])[0]
        return self.decoder(name)(self.features(x, [name])[1][name])

    def perceive_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's perception of x, from one forward of the model."""
        _, acts = self.features(x)
        return {name: self.decoder(name)(act) for name, act in acts.items()}

    def decoders_fitted(self) -> None:
        """The decoders hold trained weights (loaded from a run): no output bias to set."""
        self._awaiting_bias.clear()

    def init_decoder_biases(self, pixel_mean: torch.Tensor) -> None:
        """Decoders attached without training data take their output bias from ``pixel_mean``
        (C,) now, before their first training step (``init_output_bias``); once."""
        for name in self._awaiting_bias:
            init_output_bias(self.decoder(name), self.activation_shapes[name], self.input_shape, pixel_mean)
        self._awaiting_bias.clear()

    @contextlib.contextmanager
    def unfrozen(self):
        """The model trainable inside (``requires_grad`` on for the parameters the user had
        trainable, ``train()`` reaching it), frozen and in eval mode again after, whatever
        happens (``fine_tune``). Parameters the user froze stay frozen throughout."""
        trainable = [p for name, p in self.model.named_parameters() if self._user_requires_grad.get(name, True)]
        self._tuning = True
        for param in trainable:
            param.requires_grad_(True)
        try:
            yield self
        finally:
            self._tuning = False
            for param in trainable:
                param.requires_grad_(False)
            self.eval()

    def release(self) -> nn.Module:
        """The user's model as it was handed to ``attach``: each parameter's ``requires_grad``
        and each module's train/eval mode restored (weights that ``fine_tune`` changed stay
        changed). The attached model is frozen no more: use the returned model from here."""
        for name, param in self.model.named_parameters():
            param.requires_grad_(self._user_requires_grad.get(name, True))
        for name, module in self.model.named_modules():
            module.training = self._user_modes.get(name, module.training)
        return self.model

    def __enter__(self) -> "AttachedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def at(self, layer: str | None = None) -> "LayerView":
        """This model seen through one layer (default the deepest), as a ``PerceptionNet``:
        what figures, attacks, attack evaluation and the explorer take."""
        return LayerView(self, self.chosen_layers([layer] if layer else [self.layers[-1]])[0])

    def decoder(self, layer: str) -> nn.Module:
        return self.decoders[_key(layer)]

    def describe(self) -> list[dict]:
        """Per layer: name, activation shape, decoder parameter count (for a table)."""
        return [{"layer": n, "activation_shape": self.activation_shapes[n],
                 "decoder_parameters": parameter_count(self.decoder(n))} for n in self.layers]

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mean is None else (x - self.mean) / self.std

    def chosen_layers(self, layers: Sequence[str] | str | None) -> list[str]:
        """``layers`` (default all) shallow to deep; a name without a decoder is an error naming the choices."""
        if layers is None:
            return list(self.layers)
        layers = [layers] if isinstance(layers, str) else layers
        unknown = [n for n in layers if n not in self.layers]
        if unknown:
            raise PerceptregError(f"`layer` {unknown[0]!r} has no decoder; choose one of "
                                  f"{', '.join(self.layers)} (or attach it)")
        return [n for n in self.layers if n in layers]  # shallow to deep


def attach(model: nn.Module, layers: Sequence[str] | str, input_shape: Sequence[int], *,
           normalize: tuple[Sequence[float], Sequence[float]] | None = None,
           select: Select | None = None, decoders: dict[str, nn.Module] | None = None,
           pixel_mean: Sequence[float] | float | None = None, seed: int = 0,
           decoder_params: int | None = None) -> AttachedModel:
    """Freeze ``model`` and give each of its ``layers`` a decoder back to the input image.

    Args:
        model: any ``nn.Module`` mapping (B, *input_shape) to logits (B, classes). It is
            frozen in place: ``requires_grad`` off, eval mode, until ``release()`` (or the
            end of a ``with attach(...) as seen:`` block) restores the user's own settings.
        layers: names from ``model.named_modules()``, e.g. ``["block1", "layer2.0"]``.
        input_shape: (channels, height, width) of one image; checked with a dummy batch.
        normalize: (mean, std) per channel, if the model expects normalized inputs; the
            attached model then takes pixels in [0, 1] and normalizes them itself.
        select: ``select(name, output) -> Tensor`` picks the activation of a layer whose
            output is not a tensor (a tuple, a dict, a model output with named fields).
        decoders: your own decoders for some layers, name -> module mapping the activation
            to images of ``input_shape``; the others come from ``decoders.build_decoder``.
        pixel_mean: mean training pixel per channel in [0, 1] for the built decoders' output
            bias; without it ``fit_decoders`` takes it from its training data.
        seed: built decoders are initialised from (seed, layer name) alone, so a decoder's
            weights do not depend on which other layers are attached.
        decoder_params: give every built decoder the same budget, at most this many
            parameters (the widest that fits), so that layers compare fairly; None: the
            default widths, whose sizes differ between layers.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise PerceptregError(f"`input_shape` must be (channels, height, width) of one image, got {shape}")
    device = next(model.parameters(), torch.empty(0)).device
    seen = AttachedModel(model, shape, normalize, select).to(device)
    names = _layer_names(model, layers)
    given = dict(decoders or {})
    if set(given) - set(names):
        raise PerceptregError(f"`decoders`: {', '.join(sorted(set(given) - set(names)))} not among "
                              f"layers; give decoders only for the layers you attach")
    mean = None if pixel_mean is None else _per_channel("pixel_mean", pixel_mean, shape[0])
    seen._modules_by_name = {n: model.get_submodule(n) for n in names}
    seen.seed, seen.decoder_params, seen.given_decoders = seed, decoder_params, frozenset(given)
    logits, acts = _probe(seen, names, device)
    seen.layers, seen.num_classes = tuple(acts), int(logits.shape[1])  # acts is in run order
    seen.activation_shapes = {n: tuple(a.shape[1:]) for n, a in acts.items()}
    for name, act in acts.items():
        if name in given:
            decoder = check_decoder(name, given[name].to(act.device), act, shape)
        else:
            decoder = seeded_decoder(name, tuple(act.shape[1:]), shape, seed, decoder_params).to(act.device)
            if mean is None:
                seen._awaiting_bias.add(name)
            else:
                init_output_bias(decoder, tuple(act.shape[1:]), shape, mean)
        seen.decoders[_key(name)] = decoder
    model.requires_grad_(False)  # frozen only now: a failed attach leaves the model as found
    return seen.eval()


def _per_channel(arg: str, values, channels: int) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).flatten()  # (C,)
    if len(tensor) != channels:
        raise PerceptregError(f"`{arg}` needs one value per input channel ({channels}), got {len(tensor)}")
    return tensor


def _layer_names(model: nn.Module, layers: Sequence[str] | str) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))  # deduplicated
    if not names:
        raise PerceptregError("`layers` is empty; name at least one module of the model")
    valid = [n for n, _ in model.named_modules() if n]  # "" is the model itself
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
            # Then the top-level modules before their children: the names one thinks of first.
            ordered = close + sorted((n for n in valid if n not in close), key=lambda n: n.count("."))
            more = f" and {len(ordered) - 12} more" if len(ordered) > 12 else ""
            raise PerceptregError(f"`layers`: the model has no module {name!r}; valid names, closest "
                                  f"first: {', '.join(ordered[:12])}{more}")
    keys = [_key(n) for n in names]
    if len(set(keys)) != len(keys):
        raise PerceptregError("`layers`: two names differ only in '.' versus '__'; attach them separately")
    return names


def _key(name: str) -> str:
    return name.replace(".", "__")  # ModuleDict keys cannot contain "."


@contextlib.contextmanager
def _capture(modules: dict[str, nn.Module], select: Select | None) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that store each module's activation, in run order, removed on exit
    whatever happens: a hook left behind would keep capturing in the user's model."""
    acts: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module, inputs, output):
            acts.pop(name, None)  # a module run twice: its last output, placed last
            acts[name] = _pick(name, output, select)
        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield acts
    finally:
        for handle in handles:
            handle.remove()


def _pick(name: str, output, select: Select | None) -> torch.Tensor:
    """The tensor to decode of a layer's output: the output itself, or what ``select`` picks.
    A tuple, dict or model output with named fields is not guessed at: which of its
    tensors is "the activation" is the user's to say."""
    if select is not None:
        output = select(name, output)
    if not isinstance(output, torch.Tensor):
        raise PerceptregError(f"`layers`: {name!r} gives a {type(output).__name__}, not a tensor; in Python, "
                              f"pass attach(..., select=lambda name, output: ...) returning the tensor to "
                              f"decode, or pick a layer whose output is a tensor")
    return output


@torch.no_grad()
def _probe(seen: AttachedModel, names: list[str], device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run a dummy batch: the logits and the activations, in the order the layers ran."""
    # A batch of 2: batch-norm layers need more than one sample, and a model that mixes up
    # batch and feature dimensions is caught. In eval mode: batch-norm statistics stay put.
    x = torch.zeros(2, *seen.input_shape, device=device)
    with evaluating(seen.model), _capture(seen._modules_by_name, seen.select) as acts:
        try:
            logits = seen(x)
        except PerceptregError:
            raise
        except Exception as err:
            raise PerceptregError(f"`input_shape` {seen.input_shape}: the model failed on a batch of 2 "
                                  f"zeros of this shape ({type(err).__name__}: {err}); the images must "
                                  f"have the shape the model takes (channels, height, width)") from err
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 2:
        got = f"shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else f"a {type(logits).__name__}"
        raise PerceptregError(f"the model must return logits of shape (batch, classes); for a batch "
                              f"of 2 it returned {got} (wrap it so forward returns the logits)")
    silent = [n for n in names if n not in acts]
    if silent:
        raise PerceptregError(f"`layers`: {', '.join(silent)} never run in the model's forward; "
                              f"pick modules that the forward calls")
    return logits, dict(acts)


class LayerView(PerceptionNet):
    """An attached model through one layer: z is that layer's activation, P(x) its decoder's
    output, H the user's model. It has no classifier head C of its own (the rest of the
    user's network cannot run from an arbitrary layer), so latent edits are not offered."""

    def __init__(self, seen: AttachedModel, layer: str):
        nn.Module.__init__(self)  # PerceptionNet's constructor wires F, C, D: none here
        self.seen, self.layer = seen, layer
        self.decoder = seen.decoder(layer)
        self.encoder, self.classifier = _Activation(seen, layer), None
        self.input_shape, self.num_classes = seen.input_shape, seen.num_classes
        self.latent_shape = seen.activation_shapes[layer]

    def forward(self, x: torch.Tensor) -> PerceptionOutput:
        logits, acts = self.seen.features(x, [self.layer])
        return PerceptionOutput(logits, acts[self.layer], self.decoder(acts[self.layer]))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.seen(x)

    def perceive(self, x: torch.Tensor) -> torch.Tensor:
        return self.seen.perceive(x, self.layer)

    def init_output_bias(self, pixel_mean) -> bool:
        return False  # set when the decoders were built or first fitted


class _Activation(nn.Module):
    """F of a layer view: images -> the layer's activation (the user's model runs whole)."""

    def __init__(self, seen: AttachedModel, layer: str):
        super().__init__()
        self.layer = layer
        self._seen = [seen]  # a list: not a submodule, so the view's parameters are not counted twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._seen[0].features(x, [self.layer])[1][self.layer]
