"""The claims REPRODUCING.md checks, one row each: the paper's (with its section and figure)
or ours, the paper's number where it gives one, the step whose run measures it here
(``steps``), and its measure (``from_sweeps``, ``from_attacks``): our number with its
interval and a verdict (``verdicts``), read from the run files (``reading``).

    files = RunFiles(Path("reproduce/runs"))
    ours, verdict = CLAIMS[0].measure(files)
"""

from __future__ import annotations

from dataclasses import dataclass

from reproduce.from_attacks import (
    attack,
    beats_baselines,
    detects_pgd,
    detects_search,
    edits,
    fooled,
    noise,
    perceived_under_pgd,
    perceived_under_search,
)
from reproduce.from_sweeps import (
    LARGEST,
    accuracy_falls,
    attention,
    images_or_steps,
    information_grows,
    object_kept,
    perception_kept,
)
from reproduce.reading import Measure
from reproduce.steps import KEPT, RUN, SWEEP


@dataclass(frozen=True)
class Claim:
    claim: str  # the paper's words, shortened, or ours
    where: str  # the paper's section and figure; "ours"; or "ours, after the paper's Sec. N" (a claim it does not make)
    paper: str  # the paper's number, or "-" where it gives none
    step: str  # a key of steps.STEPS or steps.natural_steps(): the run that measures it
    measure: Measure  # our number and the verdict, from the runs
    words: str = ""  # the paper's own words, quoted beside a row of the paper's or after it

    def whose(self) -> str:
        """The "whose" cell: where, and the paper's words quoted."""
        return self.where + (f': "{self.words}"' if self.words else "")


PAPER_SWEEP = {"0.0001": 88.5, "0.001": 87.9, "0.01": 87.8, "100": 81.3}  # Fig. 3, SVHN test accuracy (%)
FIG_3 = ", ".join(f"{k}: {v} %" for k, v in PAPER_SWEEP.items())
# The paper's words (Secs. 3.1, 3.2, 4, 5, 6; Appendix A), quoted as it writes them.
EDGES = ("the model learns a representation that focuses on the middle of the image, and forgets what is at the "
         "edges of the image")
SLOWLY = "the accuracy on the supervised task decreases as λ increases, but at a relatively slow rate"
RETAINS = "The larger λ is, the more information is preserved in the features"
LOOKS = "the perception of the adversarial image really looks like a male to a human"
PGD_WORDS = ("we focus on the projected gradient descent (PGD) attack (Madry et al., 2017) throughout this paper ... "
             "100 iterations of PGD attack")
ON_MNIST = "paper, Sec. 4 (on CelebA, Figs. 4, 5); on MNIST, Appendix A, Fig. 14 (eps 0.2, lambda 1e-2)"
INTERPOLATE = ("The latent space direction corresponding to this global feature is Z = F (Xadv) - F(X)"
               " ... our technique allows precise modification of the target global feature")
DIGIT = "P(Xadv) looks like a digit to the human eye"
MODEL_FREE = ("pixel_statistic", "blur_residual")  # on grey digits; natural images compare others (COMPARED)
STRONG = ("... still, against the strong adaptive attack (C&W margin and CE - beta ||x_adv - P(x_adv)||^2, best of "
          "the betas, the losses, the restarts and plain PGD)")
FLAGS = "||x - P(x)||^2 flags most of PGD's successful attacks at 1 % and 5 % false positives (one- and two-sided)"
INSIDE = "... and most of the strong adaptive attack's, which aims inside the detector's thresholds"
EDITS = "a latent direction dz = F(x_adv) - F(x) from a targeted attack edits images toward the class"
NOISE = "noise attacked toward a class is perceived as that class"
NO_DETECTION = "ours (the paper makes no detection claim)"
AFTER_NOISE = "ours, after the paper's Sec. 6, Fig. 7 (it says only that P(x_adv) looks like a digit)"
PERCEIVED = ("P(x_adv) looks like the adversarial class: judges read P(x_adv) as adversarial more often than x_adv "
             "itself (beyond the attack's transfer) and than as the true class")

CLAIMS = [
    Claim("the classifier's P(x) keeps the centre digit and forgets the edges, against the auto-encoder limit (we "
          "read it on MNIST-strips)", "paper, Sec. 3.1, Fig. 2 (SVHN)", "-", "sweep-4000", attention, EDGES),
    Claim("test accuracy decreases as lambda increases, slowly (on MNIST-strips, 4000 images)",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", FIG_3, "sweep-4000", accuracy_falls("sweep-4000"), SLOWLY),
    Claim("the larger lambda, the more information the features keep (the side digits, the colours)",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", "-", "sweep-4000", information_grows, RETAINS),
    Claim("accuracy still decreases with lambda at SVHN's training size (MNIST-strips, 73,257 images)", "ours", "-",
          "sweep-73257", accuracy_falls("sweep-73257", slowly=False)),
    Claim(f"at lambda {LARGEST}, 73,257 images beat 4000 at the same number of optimizer steps (control)", "ours", "-",
          "sweep-4000-steps", images_or_steps),
    Claim("PGD (L-inf, eps 0.2, 100 steps, CE, 5 random restarts) changes H's prediction on most images", ON_MNIST,
          "-", "attack", attack(fooled), PGD_WORDS),
    Claim(PERCEIVED, ON_MNIST, "-", "attack", attack(perceived_under_pgd), LOOKS),
    Claim(STRONG, "ours", "-", "attack", attack(perceived_under_search)),
    Claim("||x - P(x)||^2 separates PGD's images from clean ones better than model-free statistics",
          NO_DETECTION, "-", "attack", attack(beats_baselines(MODEL_FREE))),
    Claim(FLAGS, "ours", "-", "attack", attack(detects_pgd)),
    Claim(INSIDE, "ours", "-", "attack", attack(detects_search)),
    Claim(EDITS, "paper, Sec. 5, Fig. 6 (CelebA; we edit MNIST digits)", "-", "interpolate", edits(), INTERPOLATE),
    Claim(NOISE, AFTER_NOISE, "-", "noise", noise(), DIGIT),
]

# On CIFAR-10, not SVHN: the paper's claims, made on SVHN (Sec. 3), CelebA (Secs. 4, 5) and
# MNIST (Secs. 4, 6), measured on natural images, with what only they need: an independent judge.
COMPARED = ("blur_residual", "bit_depth", "median_filter")  # the pixel statistic means nothing on natural images
CELEBA_EPS = "paper, Sec. 4; eps 0.03 in the captions of Appendix A, Figs. 8-13, 15 (CelebA)"
MARGIN_LOSS = "ours, after the paper's Sec. 4 (which runs PGD on cross-entropy; we run the C&W margin)"
NATURAL = (RUN,)  # the one natural-image model attacked: its rows are labelled "one model"
NATURAL_CLAIMS = [
    Claim("test accuracy decreases as lambda increases, slowly (on CIFAR-10)",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", FIG_3, "cifar10-sweep", accuracy_falls(SWEEP, "CIFAR-10's"), SLOWLY),
    Claim("the larger lambda, the more P(x) keeps of x: its MSE falls, the judge reads it as the true class more",
          "paper, Sec. 3.2, Fig. 3 (SVHN)", "-", "cifar10-sweep", perception_kept, RETAINS),
    Claim(f"P(x) keeps the object: the judge reads P(x) as the true class for most test images (lambda {KEPT})",
          "ours, after the paper's Sec. 3.1, Fig. 2 (SVHN; it claims the centre digit, not an object)", "-",
          "cifar10-sweep", object_kept, EDGES),
    Claim("PGD (L-inf, eps 0.03, 100 steps, C&W margin loss) changes H's prediction on most images", MARGIN_LOSS, "-",
          "cifar10-attack", attack(fooled, NATURAL), PGD_WORDS),
    Claim(PERCEIVED + " (the margin-loss PGD)", CELEBA_EPS, "-", "cifar10-attack",
          attack(perceived_under_pgd, NATURAL), LOOKS),
    Claim(STRONG, "ours", "-", "cifar10-attack", attack(perceived_under_search, NATURAL)),
    Claim("||x - P(x)||^2 separates PGD's images from clean ones better than the blur residual and feature squeezing",
          NO_DETECTION, "-", "cifar10-attack", attack(beats_baselines(COMPARED), NATURAL)),
    Claim(FLAGS, "ours", "-", "cifar10-attack", attack(detects_pgd, NATURAL)),
    Claim(INSIDE, "ours", "-", "cifar10-attack", attack(detects_search, NATURAL)),
    Claim(EDITS, "paper, Sec. 5, Fig. 6 (CelebA; we edit CIFAR-10 images toward class 1, automobile)", "-",
          "cifar10-interpolate", edits(NATURAL), INTERPOLATE),
    Claim(NOISE, AFTER_NOISE, "-", "cifar10-noise", noise(NATURAL), DIGIT),
]
