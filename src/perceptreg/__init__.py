"""perceptreg: see what a network sees, by perceptual regularization.

A classifier C(F(x)) is trained jointly with a decoder D on its latent z = F(x), so the
model's perception P(x) = D(F(x)) can be looked at. Main flow: ``models`` builds the
network, ``train`` trains it into a run folder, ``figures`` draws x beside P(x).
The second path: ``attach`` puts decoders on layers of a model one already has, and
``fit_decoders`` fits them with the model frozen.
"""

__version__ = "0.1.0"

from perceptreg.attached import AttachedModel, attach  # noqa: E402  (after __version__, which runs.py reads)
from perceptreg.fitting import evaluate_layers, fine_tune, fit_decoders  # noqa: E402

__all__ = ["AttachedModel", "__version__", "attach", "evaluate_layers", "fine_tune", "fit_decoders"]
