"""views.explore: the explorer app of run folders in one call, as `perceptreg explore` builds it."""

import warnings

import pytest
from fastapi.testclient import TestClient

from perceptreg.views.explore import explorer_app


def test_the_app_of_run_folders_answers_and_warns_beyond_loopback(trained_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loopback: no warning
        app = explorer_app([trained_run, trained_run])
    assert TestClient(app, base_url="http://127.0.0.1").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://example.com").get("/api/info").status_code == 400  # its host alone
    with pytest.warns(UserWarning, match="`host` 0.0.0.0 serves the explorer beyond this machine"):
        explorer_app([trained_run], host="0.0.0.0")
