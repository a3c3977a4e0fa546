"""REPRODUCING.md, the paper's claims beside ours with a verdict for each: made by a consumer
of the perceptreg library, outside the installed package, run from the repository root
(``python -m reproduce --help``). It imports perceptreg and calls its library; it never runs
perceptreg's command line in another process.

- ``steps``: the runs it makes, each the library call of the command the page quotes;
- ``claims``: the claims, each the paper's or ours, and the step and the measure of each;
- ``from_sweeps``, ``from_attacks``: the measures, read from what the runs wrote;
- ``reading``: the run files, checked against their schemas and hashed;
- ``verdicts``: the rules that make a verdict of a number and its interval;
- ``document``: the page; ``provenance``: the commit of the code; ``__main__``: the command line.
- ``runs/``: the runs the page was made from; git keeps their results files.
"""
