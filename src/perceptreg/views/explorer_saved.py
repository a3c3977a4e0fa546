"""What `perceive` and `invert` saved in the served run, for the explorer's page: the measures
of P(x) beside pixel MSE, the spread of perceptions, and the inversion x' beside P(x)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query

from perceptreg.display import data_uri
from perceptreg.figures.inversion import measured_line, read_inversion
from perceptreg.figures.perception import read_measures
from perceptreg.runs import for_layer
from perceptreg.runs.files import INVERSION_PNG, PERCEPTION_SPREAD

FIGURES = ((PERCEPTION_SPREAD, "x, P(x) and the spread of D(F(x) + e): what the latent leaves open"),
           (INVERSION_PNG, "x, P(x) and the inversion x' (no decoder): where they differ, the decoder's prior speaks"))


def saved(run, layer: str | None = None) -> dict:
    """The lines and the figures (as data URLs) that `perceive` and `invert` wrote for
    ``layer`` (of a run of `attach`; default the deepest); empty where they were not run."""
    named = run.output_layer(layer)
    measures, inversion = read_measures(run, named), read_inversion(run, named)
    lines = (measures.lines(run.classes) if measures else []) + ([measured_line(inversion)] if inversion else [])
    figures = [{"title": title, "image": data_uri((run.path / for_layer(name, named)).read_bytes())}
        for name, title in FIGURES if run.has(for_layer(name, named))]
    return {"lines": lines, "figures": figures}


def saved_routes(app: FastAPI, explorer) -> None:
    """GET /api/saved?layer=: ``saved`` of the served run (files only: no model work, no queue)."""
    @app.get("/api/saved")
    async def saved_files(layer: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        shown = explorer.view(layer)  # an unknown layer: the one error line every endpoint gives
        return saved(explorer.run, getattr(shown, "layer", None))
