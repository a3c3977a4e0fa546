"""Measures of a model on a dataset: accuracy, reconstruction error and decoder collapse;
what its representation keeps (latents, linear probes, error maps, CE's share of F's
gradient)."""

from __future__ import annotations

from typing import Callable

import torch

from perceptreg.core.loss import perceptual_loss
from perceptreg.core.models import PerceptionNet, evaluating
from perceptreg.data import ImageDataset, batches

# Reconstructions whose spread across images is below this fraction of the images' own
# spread are "nearly constant": the decoder collapsed (docs/guides/train-and-perceive.md).
# A working MNIST decoder sits around 0.8; the all-black collapse gives 0.0.
COLLAPSE_RATIO = 0.1
# The same test on shapes alone (colour and contrast taken out, ``shape_maps``): a decoder
# that paints each image's colours onto one ghostly average digit passes the first test on
# colour alone and fails this one. Measured: MNIST-strips at lambda 1e2 after one epoch of
# 73k images (14 % accuracy, ghost digits) 0.40, four epochs later (77 %) 0.83; a weak but
# working MNIST decoder (82 %, 4 epochs of 1000 digits) 0.57.
SHAPE_COLLAPSE_RATIO = 0.45


def shape_maps(images: torch.Tensor) -> torch.Tensor:
    """Each image's shape without its colours: (B, H, W).

    Every channel is standardised over the image's own pixels, then the squares are
    averaged over the channels that vary. Squaring removes the sign, so a digit
    drawn light on dark and dark on light give the same map, and any two colours give the
    same map of one mask; an image of one colour gives all zeros.
    """
    flat = images.double().flatten(2)  # (B, C, H*W)
    mean, std = flat.mean(2, keepdim=True), flat.std(2, keepdim=True)
    varies = std > 1e-6  # a channel both colours share carries no shape: left out of the average
    standard = torch.where(varies, (flat - mean) / std.clamp_min(1e-6), torch.zeros_like(flat))
    maps = standard.square().sum(1) / varies.sum(1).clamp_min(1)
    return maps.view(images.shape[0], *images.shape[2:])


@torch.no_grad()
def evaluate(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
             device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
             cluster=None, each_batch: Callable[..., None] | None = None) -> dict:
    """Accuracy, reconstruction MSE per pixel, and the decoder's spread ratio on ``data``.

    ``recon_spread`` is the mean over pixels of the reconstructions' standard deviation
    across images, divided by the same for the images: about 1 for a faithful decoder,
    about 0 for one that outputs the same picture whatever the input. ``shape_spread`` is
    the same ratio of their ``shape_maps``: about 0 for one that outputs the same shape in
    each image's colours. Either below its threshold flags ``decoder_collapsed``. With a
    ``distributed.Cluster`` of several processes, each evaluates every world-th image and
    the sums are added up across them. ``each_batch(images, labels, logits, recon)``, if
    given, is called with every batch of the same forward pass: another measure that needs
    it (``judges.PerceptionReader``) costs no pass of its own.
    """
    n = len(data)
    if cluster is not None and cluster.world > 1:
        data = data.subset(torch.arange(cluster.rank, n, cluster.world))
    correct = torch.zeros((), dtype=torch.int64, device=device)
    squared_error = torch.zeros((), dtype=torch.float64, device=device)
    spreads = SpreadTally(data.image_shape, device)
    with evaluating(model):
        for images, labels in batches(data, batch_size, device=device):
            with torch.autocast(torch.device(device).type, autocast_dtype or torch.bfloat16,
                                enabled=autocast_dtype is not None):
                logits, _, recon = model(images)
            if each_batch is not None:
                each_batch(images, labels, logits, recon)
            recon = recon.double()
            correct += (logits.argmax(1) == labels).sum()
            squared_error += (recon - images).square().sum()
            spreads.add(images, recon)
    if cluster is not None:
        correct, squared_error, spreads.moments, spreads.shape_moments = (
            cluster.sum(t) for t in (correct, squared_error, spreads.moments, spreads.shape_moments))
    accuracy, mse, spread, shape_spread = torch.stack([
        correct / n, squared_error / (n * spreads.moments[0].numel()),
        *spreads.ratios(n)]).tolist()  # one device sync for all four
    return {"accuracy": accuracy, "recon_mse": mse, "recon_spread": spread, "shape_spread": shape_spread,
            "decoder_collapsed": collapsed(spread, shape_spread)}


def collapsed(spread: float, shape_spread: float) -> bool:
    """The collapse rule: reconstructions nearly the same across images, or the same shape in
    each image's colours (``COLLAPSE_RATIO``, ``SHAPE_COLLAPSE_RATIO``)."""
    return spread < COLLAPSE_RATIO or shape_spread < SHAPE_COLLAPSE_RATIO


class SpreadTally:
    """The spreads of reconstructions across images (``evaluate``'s ``recon_spread`` and
    ``shape_spread``) from a stream of (x, P(x)) batches of images of ``image_shape``: ``add``
    each batch, then ``ratios`` or ``collapsed()``."""

    def __init__(self, image_shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.moments = torch.zeros(4, *image_shape, dtype=torch.float64, device=device)
        self.shape_moments = torch.zeros(4, *image_shape[1:], dtype=torch.float64, device=device)
        self.n = 0

    def add(self, images: torch.Tensor, recon: torch.Tensor) -> None:
        recon = recon.double()  # the images' sums in their own precision, as they always were
        self.moments += _moments(images, recon)
        self.shape_moments += _moments(shape_maps(images), shape_maps(recon))
        self.n += len(images)

    def ratios(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The spread ratio and the shape spread ratio over ``n`` images (default: those added)."""
        n = n or self.n
        return _spread_ratio(self.moments / n), _spread_ratio(self.shape_moments / n)

    def collapsed(self) -> bool:
        return collapsed(*torch.stack(self.ratios()).tolist())


def _moments(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-pixel sums of x, x^2, r, r^2 over the batch: what spreads are computed from."""
    return torch.stack([images.sum(0), images.square().sum(0), recon.sum(0), recon.square().sum(0)])


def _spread_ratio(mean: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel standard deviation of the reconstructions over that of the images."""
    std_images = (mean[1] - mean[0].square()).clamp_min(0).sqrt().mean()
    std_recon = (mean[3] - mean[2].square()).clamp_min(0).sqrt().mean()
    return std_recon / std_images.clamp_min(1e-12)


# --- what a representation keeps -------------------------------------------------------------

@torch.no_grad()
def latents(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """z = F(x) for every image, flattened: (N, latent size), on the CPU (where probes fit and labels live)."""
    with evaluating(model):
        return torch.cat([model.encoder(x).flatten(1).float().cpu() for x, _ in batches(data, batch_size, device=device)])


def linear_probe(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 weight_decay: float = 1e-3, max_iter: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen features.

    Features are standardised with the training statistics; the fit is full-batch L-BFGS
    (deterministic), with a small L2 penalty so separable data still has an optimum.
    """
    mean, std = train_z.mean(0), train_z.std(0).clamp_min(1e-6)
    x_train, x_test = (train_z - mean) / std, (test_z - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    probe = torch.nn.Linear(x_train.shape[1], classes, device=x_train.device)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x_train), train_y) + weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return (probe(x_test).argmax(1) == test_y).float().mean().item()


def mlp_probe(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
              hidden: int = 64, steps: int = 300, lr: float = 1e-2, seed: int = 0) -> float:
    """Test accuracy of a one-hidden-layer MLP fitted on frozen features: what a small
    nonlinear read-out gets where a linear one cannot (a side digit under random colours).

    A fixed budget, so probes compare: standardised features, ``hidden`` ReLU units,
    ``steps`` full-batch Adam steps, weights drawn from ``seed`` (the global RNG untouched).
    """
    mean, std = train_z.mean(0), train_z.std(0).clamp_min(1e-6)
    x_train, x_test = (train_z - mean) / std, (test_z - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = torch.nn.Sequential(torch.nn.Linear(x_train.shape[1], hidden), torch.nn.ReLU(),
                                    torch.nn.Linear(hidden, classes)).to(x_train.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=1e-4)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(probe(x_train), train_y).backward()
            optimizer.step()
    with torch.no_grad():
        return (probe(x_test).argmax(1) == test_y).float().mean().item()


def gradient_shares(model: PerceptionNet, data: ImageDataset, lam: float, reduction: str = "sum",
                    n_batches: int = 8, batch_size: int = 64, device: torch.device | str = "cpu") -> dict:
    """How the two terms of the objective pull on F: the norms of the gradients of CE and of
    lam * recon with respect to F's parameters, averaged over ``n_batches`` batches of a
    fixed random part of ``data``, and ``ce_share`` = |g_ce| / (|g_ce| + |g_recon|).

    Near 1, F learns the task and D reads what it kept; near 0, F is an auto-encoder's
    encoder and C makes do with what reconstruction kept. The model is left as found.
    """
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    data = data.subset(order[:n_batches * batch_size])  # a fixed mix of classes, not the first rows
    parameters = [p for p in model.encoder.parameters() if p.requires_grad]
    norms = torch.zeros(2, dtype=torch.float64, device=device)
    with evaluating(model), torch.enable_grad():
        for images, labels in batches(data, batch_size, device=device):
            logits, _, recon = model(images)
            parts = perceptual_loss(logits, labels, images, recon, lam, reduction)
            for row, term in enumerate((parts.ce, lam * parts.recon)):
                grads = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
                norms[row] += torch.stack([g.double().square().sum() for g in grads if g is not None]).sum().sqrt()
    ce_norm, recon_norm = (norms / -(-len(data) // batch_size)).tolist()
    return {"ce_grad_norm": ce_norm, "recon_grad_norm": recon_norm,
            "ce_share": ce_norm / max(ce_norm + recon_norm, 1e-30)}


@torch.no_grad()
def error_map(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Where the perception misses: squared reconstruction error per pixel, averaged over
    the images and channels of ``data``: (H, W). The model's "attention", measured."""
    total = torch.zeros(data.image_shape[1:], dtype=torch.float64, device=device)
    with evaluating(model):
        for x, _ in batches(data, batch_size, device=device):
            total += (model.perceive(x).float() - x).square().mean(1).sum(0).double()
    return (total / len(data)).float().cpu()


def centre_to_edge_ratio(errors: torch.Tensor) -> float:
    """Mean error in the middle half of the columns divided by that in the outer quarters.

    Well below 1: the perception keeps the centre and loses the edges (the restricted
    attention the paper shows for small lambda); it rises as the edges are kept too."""
    width = errors.shape[1]
    centre = errors[:, width // 4: width - width // 4]
    edges = torch.cat([errors[:, : width // 4], errors[:, width - width // 4:]], 1)
    return (centre.mean() / edges.mean().clamp_min(1e-12)).item()
