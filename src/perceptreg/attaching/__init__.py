"""Perceiving a model you already have: fit decoders on its layers with the model frozen
(``fitting.fit_decoders``), or fine-tune it with the paper's objective (``fitting.fine_tune``),
measure every layer (``fitting.evaluate_layers``), and the whole `attach` run into a run
folder (``attach_run.run_attach``). The attached model itself is ``core.attached``: runs
rebuild it, so it sits below them."""
