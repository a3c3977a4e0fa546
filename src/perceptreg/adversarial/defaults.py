"""The attack settings' choices and defaults, in a module without torch: the attack modules
use them, and the CLI's --help shows them without importing torch."""

from perceptreg.core import config
from perceptreg.data.registry import GREY_EPS

NORMS = config.NORMS  # adversarial training's too: their one home is core.config
SCHEDULES = ("constant", "cosine")
LOSSES = ("ce", "margin", "dlr")
# PGD's radius where it knows no dataset: the paper's MNIST radius. Where a run or dataset is
# known, the radius of its images (data.registry.attack_eps, AttackSettings.for_images).
DEFAULT_EPS = GREY_EPS
DEFAULT_STEPS = 100  # the paper's iterations
# Bounds on what an attack may be asked to run: a typo (1e12 steps) must be refused, not run
# for weeks. 100,000 steps is 100x APGD's longest budget; 1,000 restarts 200x RobustBench's.
MAX_STEPS = 100_000
MAX_RESTARTS = 1_000
DEFAULT_BETAS = (0.0, 0.01, 0.1, 1.0, 10.0)  # a factor 10 apart: the scores and margins differ by orders
DEFAULT_FPRS = (0.01, 0.05)
OURS = "pgd"  # --attack's name for our PGD, built from the settings
# --attack's name for AutoAttack's standard ensemble at the settings' eps, norm and steps (100:
# the standard's), the one robust-accuracy runs (adversarial.robust_accuracy.autoattack)
AUTOATTACK = "autoattack"
# The standing judge of a natural-image dataset (judges.standing_judge_config): ours, not the
# paper's. Another architecture (a VGG-style net) and another seed than the svhn net it
# judges; lam 0, so its decoder is untouched and it is a classifier trained on real images only.
STANDING_JUDGE = {"arch": "vgg", "seed": 1, "lam": 0.0, "epochs": 10, "eval_size": 2000}
JUDGE_CHECK_IMAGES = 1000  # test images (spread over the classes) on which a judge's own accuracy is printed
NOISE_SHOWN = 2  # noise-to-class images per class the grid shows; the rates count all of them
