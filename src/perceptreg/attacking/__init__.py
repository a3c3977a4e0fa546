"""The attack commands as library calls, one each, on a run folder: they attack, measure,
draw and write what the command does, and return it typed.

- ``attack_run`` (`perceptreg attack`): the figure of x, x_adv, P(x), P(x_adv) and the
  failure cases;
- ``attack_from_noise`` (`perceptreg attack --from-noise`): noise attacked toward each class;
- ``evaluate_attack`` (`perceptreg evaluate-attack`): the measured attack, with --compare,
  the ROC and convergence figures and attack_metrics.json.

The method (attacks, measures, judges, detector) is ``adversarial``'s; this package sits
above ``figures``, which draws what these write.
"""
