import io
import json
import random
import warnings

import pytest
from PIL import Image

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
from fastapi.testclient import TestClient  # noqa: E402

from perceptreg.data.images import as_mnist_digit  # noqa: E402
from perceptreg.runs import open_run
from perceptreg.views import explorer, explorer_survey, explorer_upload  # noqa: E402


@pytest.fixture(scope="module")
def client(good_run):
    return TestClient(explorer.create_app(open_run(good_run)), base_url="http://127.0.0.1")


def png(size=(28, 28), colour=0, mode="L", format="PNG", bar=None):
    """An image of one colour, with a ``bar`` (its colour) drawn down the middle."""
    picture = Image.new(mode, size, colour)
    if bar is not None:
        w, h = size
        picture.paste(bar, (w // 2 - w // 12, h // 8, w // 2 + w // 12, h - h // 8))
    buffer = io.BytesIO()
    picture.save(buffer, format=format)
    return buffer.getvalue()


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "http" not in page.text.split("<body>")[1]
    info = client.get("/api/info").json()
    assert info["classes"] == [str(d) for d in range(10)] and info["test_images"] == 1000


def test_the_page_names_a_run_of_any_folder_name_as_text(good_run, tmp_path):
    # a run path is the user's: in the heading, its title and <title> it is text, never markup
    run = tmp_path / 'a<b>&"c'
    run.mkdir()
    for p in good_run.iterdir():
        if p.is_file():
            (run / p.name).write_bytes(p.read_bytes())
    page = TestClient(explorer.create_app(open_run(run)), base_url="http://127.0.0.1").get("/").text
    shown = "perceptreg explorer: a&lt;b&gt;&amp;&quot;c"  # the run's folder name
    assert f'<h1 title="{shown}">{shown}</h1>' in page and f"<title>{shown}</title>" in page
    assert "<b>" not in page


def test_gallery_pages(client):
    first = client.get("/api/gallery", params={"offset": 0, "limit": 12}).json()
    # the classes in turn: the test set itself is sorted by class
    assert first["total"] == 1000 and [item["label"] for item in first["items"]] == list("012345678901")
    assert first["items"][0]["index"] == 0 and first["items"][1]["index"] == 100
    item = first["items"][0]
    assert item["image"].startswith("data:image/png;base64,") and item["perception"].startswith("data:image/png")
    assert sum(item["probabilities"]) == pytest.approx(1, abs=1e-5) and item["label"] == "0"
    last = client.get("/api/gallery", params={"offset": 998, "limit": 5}).json()
    assert [item["index"] for item in last["items"]] == [899, 999]
    everything = [i["index"] for o in range(0, 1000, 64)
                  for i in client.get("/api/gallery", params={"offset": o, "limit": 64}).json()["items"]]
    assert sorted(everything) == list(range(1000))


def test_attack_changes_the_prediction_within_the_ball(client):
    result = client.post("/api/attack", json={"index": 0, "eps": 0.3, "steps": 50}).json()
    assert result["adversarial"]["prediction"] != result["label"]
    assert result["linf_distance"] <= 0.3 + 1e-6


def test_targeted_attack(client):
    result = client.post("/api/attack", json={"index": 0, "eps": 0.4, "steps": 100, "target": 7}).json()
    assert result["adversarial"]["prediction"] == "7"


def test_edit_frames_walk_toward_the_target(client):
    result = client.post("/api/edit", json={"index": 0, "target": 8, "steps": 50}).json()
    frames = result["frames"]
    assert [f["alpha"] for f in frames] == list(explorer.ALPHAS)
    assert frames[0]["image"] != frames[-1]["image"]


def test_perceive_an_upload(client):
    result = client.post("/api/perceive", files={"file": ("d.png", png((200, 120), 255, bar=0), "image/png")}).json()
    assert result["prediction"] in [str(d) for d in range(10)]
    assert Image.open(io.BytesIO(__import__("base64").b64decode(result["image"].split(",")[1]))).size == (28, 28)
    jpeg = client.post("/api/perceive", files={"file": ("d.jpg", png(mode="RGB", format="JPEG", bar=(255, 255, 255)), "image/jpeg")})
    assert jpeg.status_code == 200


@pytest.mark.parametrize("body, status, message", [
    ({"index": 1000}, 422, "index must lie in 0..999"),
    ({"index": 0, "target": 10}, 422, "target class 10 is outside the model's classes 0..9"),
    ({"index": 0, "eps": 0}, 422, "greater than 0"),
    ({"index": 0, "steps": 100000}, 422, "steps must be at most 500"),
    ({"index": 0, "norm": "l1"}, 422, "linf"),
    ({"index": "zero"}, 422, "index must be a whole number"),
    ({"index": 0, "path": "/etc/passwd"}, 422, "path is not a setting of this request"),
    ({"index": 0, "steps": True}, 422, "steps must be a whole number"),  # lax pydantic ran it as 1 step
    ({"index": 1.5}, 422, "index must be a whole number"),
    ({"index": 0, "eps": "0.1"}, 422, "eps must be a number"),
    ({"index": 0, "eps": True}, 422, "eps must be a number"),
])
def test_attack_validation(client, body, status, message):
    response = client.post("/api/attack", json=body)
    assert response.status_code == status and message in json.dumps(response.json())


def test_nan_is_a_422_not_a_500(client):
    response = client.post("/api/attack", content=b'{"index": 0, "eps": NaN}', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "finite" in response.text


@pytest.mark.parametrize("payload, status, message", [
    (b"", 422, "empty"), (b"not an image", 422, "not a readable"),
    (png()[:40], 422, "not a readable"), (png(format="GIF", mode="L"), 415, "only PNG and JPEG"),
    (b"\x89PNG" + b"\x00" * (explorer.MAX_UPLOAD_BYTES + 10), 413, "at most"),
])
def test_bad_uploads(client, payload, status, message):
    response = client.post("/api/perceive", files={"file": ("x.png", payload, "image/png")})
    assert response.status_code == status and message in response.json()["detail"]


def test_huge_dimensions_are_refused_before_decoding(client, monkeypatch):
    monkeypatch.setattr(explorer_upload, "MAX_UPLOAD_PIXELS", 100 * 100)
    response = client.post("/api/perceive", files={"file": ("x.png", png((101, 100)), "image/png")})
    assert response.status_code == 413 and "101x100" in response.json()["detail"]


def malformed_requests(seed=0, count=240):
    """Wrong types, huge numbers, NaN, missing and extra fields, broken JSON, bad uploads."""
    rng = random.Random(seed)
    odd_values = [None, "", "x", "NaN", "1e999", -1, 0, 1e308, -1e308, 10**30, [], {}, [1, 2], True, 3.5,
                  "0; DROP TABLE", "../../etc/passwd", "\x00", 2**63]
    fields = ["index", "eps", "steps", "norm", "target"]
    for i in range(count):
        kind = i % 6
        if kind == 0:
            body = {f: rng.choice(odd_values) for f in rng.sample(fields, rng.randint(1, 5))}
            yield "post", "/api/attack", {"json": body}
        elif kind == 1:
            body = {f: rng.choice(odd_values) for f in rng.sample(["index", "target", "eps", "steps"], rng.randint(1, 4))}
            yield "post", "/api/edit", {"json": body}
        elif kind == 2:
            raw = rng.choice([b"{", b"[]", b"null", b'{"index": NaN}', b'{"index": Infinity}', b'{"index": 1e999}',
                              bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))])
            yield "post", rng.choice(["/api/attack", "/api/edit"]), {"content": raw, "headers": {"content-type": "application/json"}}
        elif kind == 3:
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            if rng.random() < 0.5:
                payload = png()[: rng.randint(0, len(png()) // 2)] + payload  # cut inside the image data
            yield "post", "/api/perceive", {"files": {"file": ("f.png", payload, "image/png")}}
        elif kind == 4:
            invalid = {"offset": [-5, 10**12, "abc", "NaN", 1e20, ""], "limit": [0, -1, 65, 10**12, "abc", "1.5"]}
            key = rng.choice(["offset", "limit"])
            params = {key: rng.choice(invalid[key])}
            yield "get", "/api/gallery", {"params": params}
        else:
            yield "post", "/api/perceive", {"data": {"file": rng.choice(["text", "", "1"])}}


def test_fuzz_every_malformed_request_gets_a_4xx_and_the_server_keeps_serving(client):
    statuses = []
    for method, url, kwargs in malformed_requests():
        response = getattr(client, method)(url, **kwargs)
        statuses.append(response.status_code)
        assert 400 <= response.status_code < 500, (url, kwargs, response.status_code, response.text[:200])
    assert len(statuses) >= 200
    assert client.post("/api/attack", json={"index": 3, "steps": 5}).status_code == 200


def test_drawn_digits_are_prepared_as_mnist_was():
    page = Image.new("L", (280, 280), 255)  # dark ink on a light page, off centre
    page.paste(0, (20, 30, 60, 230))  # a 40 x 200 bar
    digit = as_mnist_digit(page)
    pixels = __import__("numpy").asarray(digit, dtype=float)
    rows, cols = pixels.nonzero()
    assert digit.size == (28, 28) and pixels.max() == 255 and pixels[0, 0] == 0  # inverted
    assert rows.max() - rows.min() + 1 == 20  # the longer side scaled to 20
    weights = pixels / pixels.sum()
    assert abs((weights.sum(1) * range(28)).sum() - 14) < 0.6 and abs((weights.sum(0) * range(28)).sum() - 14) < 0.6
    assert as_mnist_digit(Image.new("L", (50, 50), 0)).getbbox() is None  # blank stays blank


@pytest.mark.parametrize("ink", [(0, 0, 0, 255), (255, 255, 255, 255)])
def test_a_transparent_drawing_is_read_whatever_its_ink(client, ink):
    picture = Image.new("RGBA", (140, 140), (0, 0, 0, 0))
    picture.paste(ink, (60, 20, 80, 120))  # a "1" on transparent paper
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    result = client.post("/api/perceive", files={"file": ("one.png", buffer.getvalue(), "image/png")})
    assert result.status_code == 200, result.text
    seen = Image.open(io.BytesIO(__import__("base64").b64decode(result.json()["image"].split(",")[1])))
    assert seen.getpixel((14, 14)) > 200 and seen.getpixel((2, 2)) == 0  # light ink on black, as MNIST


@pytest.mark.parametrize("picture", [png((280, 280), 0), png((280, 280), 255), png((50, 50), 128)])
def test_an_empty_image_is_said_to_be_empty(client, picture):
    response = client.post("/api/perceive", files={"file": ("blank.png", picture, "image/png")})
    assert response.status_code == 422 and "the image is empty" in response.json()["detail"]


def test_gallery_filters_and_orders(client):
    def items(**params):
        return client.get("/api/gallery", params={"limit": 64, **params}).json()
    wrong = items(show="misclassified")
    assert wrong["total"] > 0 and all(i["prediction"] != i["label"] for i in wrong["items"])
    unsure = items(show="low-confidence", sort="confidence")
    confidences = [i["confidence"] for i in unsure["items"]]
    assert confidences and max(confidences) < 0.6 and confidences == sorted(confidences)
    errors = [i["error"] for i in items(sort="error")["items"]]
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[-1] > 0
    threes = items(label=3, show="all")
    assert threes["total"] == 100 and {i["label"] for i in threes["items"]} == {"3"}
    assert client.get("/api/gallery", params={"show": "odd"}).status_code == 422
    assert client.get("/api/gallery", params={"label": 10}).status_code == 422


def test_the_map_of_z_and_an_attack_path_on_it(client):
    latent_map = client.get("/api/map").json()
    (only,) = latent_map["maps"]
    points = only["points"]
    assert latent_map["total"] == 1000 and sorted(latent_map["index"]) == list(range(1000))
    assert len(points) == 1000 and all(len(p) == 2 for p in points)
    spread = [sum((p[k] - sum(q[k] for q in points) / 1000) ** 2 for p in points) for k in (0, 1)]
    assert spread[0] >= spread[1] > 0  # the first principal axis carries the most variance
    result = client.post("/api/attack", json={"index": 0, "eps": 0.3, "steps": 20}).json()
    path, start = result["path"], points[latent_map["index"].index(0)]
    assert len(path) == 20 + 2  # x, one point per PGD step, x_adv
    assert path[0] == pytest.approx(start, abs=1e-4) and path[-1] != pytest.approx(start, abs=1e-2)
    assert result["l2_distance"] > result["linf_distance"] > 0
    difference = Image.open(io.BytesIO(__import__("base64").b64decode(result["difference"].split(",")[1])))
    assert difference.getextrema() in [(0, 255), (0, 254), (1, 255)]  # amplified to the full range


def test_the_map_of_a_large_test_set_is_a_capped_seeded_sample(good_run, monkeypatch):
    monkeypatch.setattr(explorer_survey, "MAX_MAP_POINTS", 50)
    capped = TestClient(explorer.create_app(open_run(good_run)), base_url="http://127.0.0.1")
    latent_map = capped.get("/api/map").json()
    assert latent_map["total"] == 1000 and len(latent_map["index"]) == len(latent_map["maps"][0]["points"]) == 50
    assert latent_map["index"] == explorer_survey.sample(1000).tolist()  # the same sample on every start
    assert capped.get("/api/gallery", params={"sort": "error"}).json()["total"] == 1000  # the gallery: all


def test_runs_are_compared_on_the_same_image_and_attack(good_run, trained_run):
    both = TestClient(explorer.create_app([open_run(good_run), open_run(trained_run)]), base_url="http://127.0.0.1")
    assert both.get("/api/info").json()["compared"] == [str(trained_run)]
    result = both.post("/api/attack", json={"index": 0, "eps": 0.3, "steps": 20}).json()
    alone = TestClient(explorer.create_app(open_run(trained_run)), base_url="http://127.0.0.1").post(
        "/api/attack", json={"index": 0, "eps": 0.3, "steps": 20}).json()
    (other,) = result["compared"]
    assert result["run"] == str(good_run) and other["run"] == str(trained_run)
    maps = both.get("/api/map").json()
    assert [m["run"] for m in maps["maps"]] == [str(good_run), str(trained_run)]
    where = maps["index"].index(0)
    for run, attacked in zip(maps["maps"], (result, other)):  # each path starts at x on its own run's map
        assert attacked["path"][0] == pytest.approx(run["points"][where], abs=1e-4)
    assert maps["maps"][0]["points"] != maps["maps"][1]["points"]
    assert other["clean"]["image"] == result["clean"]["image"]  # the same image
    for key in ("adversarial", "linf_distance", "difference"):  # the same attack as on that run alone
        assert other[key] == alone[key]
    assert other["adversarial"]["perception"] != result["adversarial"]["perception"]


def test_every_answer_carries_each_compared_run(good_run, trained_run):
    both = TestClient(explorer.create_app([open_run(good_run), open_run(trained_run)]), base_url="http://127.0.0.1")
    alone = TestClient(explorer.create_app(open_run(trained_run)), base_url="http://127.0.0.1")
    card = both.get("/api/gallery", params={"limit": 2}).json()["items"][1]
    (other,) = card["compared"]
    by_itself = alone.get("/api/gallery", params={"limit": 2}).json()["items"][1]
    assert other["run"] == str(trained_run) and set(other) == {"run", *explorer.SEEN}
    assert [other[key] for key in explorer.SEEN] == [by_itself[key] for key in explorer.SEEN]  # that run's reading
    clicked = both.get("/api/image", params={"index": card["index"]}).json()  # a map click: the card's answer
    assert {key: clicked[key] for key in ("index", "label", "image", "prediction")} == {
        key: card[key] for key in ("index", "label", "image", "prediction")}
    assert clicked["confidence"] == pytest.approx(card["confidence"], abs=1e-5)  # in a batch of one
    drawn = both.post("/api/perceive", files={"file": ("d.png", png((60, 60), 0, bar=255), "image/png")}).json()
    assert drawn["compared"][0]["run"] == str(trained_run)
    walk = both.post("/api/edit", json={"index": 0, "target": 8, "steps": 5}).json()
    assert [w["run"] for w in walk["compared"]] == [str(trained_run)]
    assert walk["compared"][0]["frames"] == alone.post("/api/edit", json={"index": 0, "target": 8, "steps": 5}).json()["frames"]
    assert both.get("/api/image", params={"index": 1000}).status_code == 422


def test_an_attack_without_eps_takes_the_radius_of_the_runs_images(client, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from helpers import colour_folder

    from perceptreg.cli import main

    # digits: the paper's MNIST radius, the slider's start; L2's own, MNIST's usual 2.0
    assert client.get("/api/info").json()["eps"] == {"linf": 0.2, "l2": 2.0}
    digits = client.post("/api/attack", json={"index": 0, "steps": 5}).json()
    assert digits["eps"] == 0.2 and digits["linf_distance"] <= 0.2 + 1e-6
    digits = client.post("/api/attack", json={"index": 0, "steps": 5, "norm": "l2"}).json()
    assert digits["eps"] == 2.0 and digits["l2_distance"] <= 2.0 + 1e-5
    monkeypatch.setenv("PERCEPTREG_JUDGES", str(tmp_path / "judges"))
    run = tmp_path / "pets-run"
    result = CliRunner().invoke(main, ["train", "--dataset", colour_folder(tmp_path / "pets"), "--epochs", "1",
                                       "--out", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    colour = TestClient(explorer.create_app(open_run(run)), base_url="http://127.0.0.1")
    assert colour.get("/api/info").json()["eps"] == {"linf": 0.03, "l2": 0.5}
    attacked = colour.post("/api/attack", json={"index": 0, "steps": 5}).json()
    assert attacked["eps"] == 0.03 and attacked["linf_distance"] <= 0.03 + 1e-6
    given = colour.post("/api/attack", json={"index": 0, "steps": 5, "eps": 0.1}).json()
    assert given["eps"] == 0.1  # a given eps wins


def test_an_upload_keeps_its_aspect_its_centre_cropped_to_the_models_shape():
    """A 200x150 photo of three bands (red | green | blue, left to right) for a 32x32 colour
    model: its 150x150 centre is taken (columns 25 to 174: 42 red, 66 green, 42 blue), so the
    green middle takes 44 % of the width, not the third it takes squashed."""
    import numpy as np

    from perceptreg.views.explorer_upload import decode_upload

    bands = np.zeros((150, 200, 3), np.uint8)
    bands[:, :67, 0], bands[:, 67:133, 1], bands[:, 133:, 2] = 255, 255, 255
    buffer = io.BytesIO()
    Image.fromarray(bands).save(buffer, format="PNG")
    image = decode_upload(buffer.getvalue(), None, (3, 32, 32))[0]
    green = (image[1] > 0.5) & (image[0] < 0.5)
    assert green[16].sum().item() in (14, 15)  # 32 * 66 / 150 = 14.1; squashed, 32 * 66 / 200 = 10.6
    assert (image[0, 16] > 0.5).sum().item() in (8, 9)  # 32 * 42 / 150 = 9.0; squashed, 10.7
