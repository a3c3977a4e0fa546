"""The report and the explorer show what `perceive` measured and `invert` drew, where they were run."""

import shutil

from fastapi.testclient import TestClient

from perceptreg.core.inversion_settings import InversionSettings
from perceptreg.figures.inversion import invert
from perceptreg.figures.perception import perceive
from perceptreg.runs import open_run
from perceptreg.views import explorer
from perceptreg.views.explorer_saved import saved
from perceptreg.views.report import build_report


def test_the_report_and_the_explorer_show_the_measures_the_spread_and_the_inversion(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for made in [*run.glob("perception*.json"), *run.glob("perception_spread*.png"), *run.glob("inversion*")]:
        made.unlink()  # the session's run may have been perceived by another test
    assert saved(open_run(run)) == {"lines": [], "figures": []}  # neither was run
    perceive(run, n=2, read_size=10)
    invert(run, n=2, settings=InversionSettings(steps=3))
    page = build_report(open_run(run), None)
    assert "H reads P(x) as it reads x" in page and "judge 3-NN pixels: x read right" in page
    assert "the decoder&#x27;s prior speaks" in page and "what the latent leaves open" in page
    assert "H reads x&#x27; as x" in page
    found = TestClient(explorer.create_app(open_run(run)), base_url="http://127.0.0.1").get("/api/saved").json()
    assert [f["title"].split(":")[0] for f in found["figures"]] == [
        "x, P(x) and the spread of D(F(x) + e)", "x, P(x) and the inversion x' (no decoder)"]
    assert found["figures"][0]["image"].startswith("data:image/png;base64,")
    assert any("H reads P(x) as it reads x" in line for line in found["lines"])
