"""Measures of models: what a model does on a dataset (``quality``: accuracy, reconstruction
error, collapse, probes on its latent, error maps, CE's share of the gradient) and the
intervals every number is given with, and McNemar's paired test (``intervals``), and the
typed numbers of the results files (``records``: ``Rate``, ``MeanOf``, their base ``Record``)."""

from perceptreg.measures.intervals import WILSON_Z, format_rate, mcnemar, mean_and_interval, mean_of, rate, rate_of
from perceptreg.measures.quality import (
    COLLAPSE_RATIO,
    SHAPE_COLLAPSE_RATIO,
    centre_to_edge_ratio,
    error_map,
    evaluate,
    gradient_shares,
    latents,
    linear_probe,
    mlp_probe,
    shape_maps,
)
from perceptreg.measures.records import MeanOf, Rate, Record

__all__ = ["WILSON_Z", "format_rate", "mcnemar", "mean_and_interval", "mean_of", "rate", "rate_of", "COLLAPSE_RATIO",
           "SHAPE_COLLAPSE_RATIO", "centre_to_edge_ratio", "error_map", "evaluate", "gradient_shares",
           "latents", "linear_probe", "mlp_probe", "shape_maps", "MeanOf", "Rate", "Record"]
