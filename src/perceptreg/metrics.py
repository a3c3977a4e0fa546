"""What a trained model does on a dataset: accuracy, reconstruction error, decoder collapse."""

from __future__ import annotations

import torch

from perceptreg.data import ImageDataset, batches
from perceptreg.models import PerceptionNet

# Reconstructions whose spread across images is below this fraction of the images' own
# spread are "nearly constant": the decoder collapsed (PAPER-NOTES, training pitfall).
# A working MNIST decoder sits around 0.8; the all-black collapse gives 0.0.
COLLAPSE_RATIO = 0.1


@torch.no_grad()
def evaluate(model: PerceptionNet, data: ImageDataset, batch_size: int = 500,
             device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> dict:
    """Accuracy, reconstruction MSE per pixel, and the decoder's spread ratio on ``data``.

    ``recon_spread`` is the mean over pixels of the reconstructions' standard deviation
    across images, divided by the same for the images: about 1 for a faithful decoder,
    about 0 for one that outputs the same picture whatever the input.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    squared_error = torch.zeros((), dtype=torch.float64, device=device)
    moments = torch.zeros(4, *data.image_shape, dtype=torch.float64, device=device)
    try:
        for images, labels in batches(data, batch_size, device=device):
            with torch.autocast(torch.device(device).type, autocast_dtype or torch.bfloat16,
                                enabled=autocast_dtype is not None):
                logits, _, recon = model(images)
            recon = recon.double()
            correct += (logits.argmax(1) == labels).sum()
            squared_error += (recon - images).square().sum()
            moments += torch.stack([images.sum(0), images.square().sum(0),
                                    recon.sum(0), recon.square().sum(0)])
    finally:
        model.train(was_training)
    n = len(data)
    mean = moments / n
    std_images = (mean[1] - mean[0].square()).clamp_min(0).sqrt().mean()
    std_recon = (mean[3] - mean[2].square()).clamp_min(0).sqrt().mean()
    accuracy, mse, spread = torch.stack([
        correct / n, squared_error / (n * mean[0].numel()), std_recon / std_images.clamp_min(1e-12)
    ]).tolist()  # one device sync for all three
    return {"accuracy": accuracy, "recon_mse": mse, "recon_spread": spread,
            "decoder_collapsed": spread < COLLAPSE_RATIO}
