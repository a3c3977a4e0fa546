"""perceptreg: see what a network sees, by perceptual regularization.

A classifier C(F(x)) is trained jointly with a decoder D on its latent z = F(x), so the
model's perception P(x) = D(F(x)) can be looked at. Main flow: ``models`` builds the
network, ``train`` trains it into a run folder, ``figures`` draws x beside P(x).
"""

__version__ = "0.1.0"
