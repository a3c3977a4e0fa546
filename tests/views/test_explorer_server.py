"""The explorer's serving rules over real HTTP: a bounded queue, cancelled work of clients
that left, Host and Content-Length checks, no CDN pages, a port in use."""

import gc
import shutil
import socket
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from perceptreg.cli import main
from perceptreg.runs import open_run
from perceptreg.views import explorer
from perceptreg.views.explorer_server import allowed_hosts, host_name


@pytest.fixture(scope="module")
def served(good_run):
    app = explorer.create_app(open_run(good_run))
    server, url = explorer.serve_in_background(app)
    yield app.state.explorer, url
    server.should_exit = True


def attack(url, steps, index=0):
    return httpx.post(url + "/api/attack", json={"index": index, "steps": steps}, timeout=60)


def abandon(url, steps):
    """Send an attack and hang up without reading the answer."""
    host, port = url.removeprefix("http://").split(":")
    body = f'{{"index": 1, "steps": {steps}}}'.encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /api/attack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.05)


def blocked(queue):
    """Occupy the model thread until the returned event is set."""
    release = threading.Event()
    queue._worker.submit(release.wait)
    return release


def test_a_full_queue_answers_503_with_retry_after_and_pages_still_load(served, monkeypatch):
    model, url = served
    monkeypatch.setattr(model.queue, "capacity", 2)
    release = blocked(model.queue)
    answers = []
    waiting = [threading.Thread(target=lambda: answers.append(attack(url, 2))) for _ in range(2)]
    for thread in waiting:
        thread.start()
    while model.queue.waiting < 2:
        time.sleep(0.01)
    try:
        full = attack(url, 2)
        began = time.perf_counter()
        page = httpx.get(url + "/")
        page_seconds = time.perf_counter() - began
    finally:
        release.set()
    for thread in waiting:
        thread.join()
    assert full.status_code == 503 and full.headers["Retry-After"] == "2" and "busy" in full.json()["detail"]
    assert page.status_code == 200 and page_seconds < 1.0  # the page does not wait for the model
    assert [a.status_code for a in answers] == [200, 200] and model.queue.waiting == 0


def test_a_waiting_request_finds_its_place_in_the_queue(served):
    model, url = served
    release = blocked(model.queue)
    answers = {}

    def send(ticket):
        answers[ticket] = httpx.post(url + "/api/attack", json={"index": 0, "steps": 2},
                                     headers={"X-Ticket": ticket}, timeout=60)
    senders = []
    for k, ticket in enumerate(["first", "second", "third"]):
        senders.append(threading.Thread(target=send, args=(ticket,)))
        senders[-1].start()
        while model.queue.waiting < k + 1:  # in this order
            time.sleep(0.01)
    try:
        places = {t: httpx.get(url + "/api/queue", params={"ticket": t}).json()["ahead"]
                  for t in ["first", "second", "third", "unknown"]}
    finally:
        release.set()
    for thread in senders:
        thread.join()
    assert places == {"first": 0, "second": 1, "third": 2, "unknown": None}
    assert [answers[t].status_code for t in ["first", "second", "third"]] == [200, 200, 200]
    assert httpx.get(url + "/api/queue", params={"ticket": "third"}).json() == {"ahead": None}  # answered
    assert httpx.get(url + "/api/queue", params={"ticket": "x" * 101}).status_code == 422


@pytest.mark.slow  # over 2 s alone: the fast lane leaves it out
def test_work_of_a_client_that_left_is_cancelled(served, caplog):
    model, url = served
    attack(url, 500)  # warm-up
    began = time.perf_counter()
    attack(url, 500)
    one_attack = time.perf_counter() - began
    cancelled = model.queue.cancelled
    for _ in range(3):  # the first one starts running, the others wait
        abandon(url, 500)
    began = time.perf_counter()
    assert attack(url, 10).status_code == 200
    # served within one attack's time: without cancelling, it waits for 3 of them
    # well within one attack's time: without cancelling, it waits for the rest of the running
    # one (and for the other two if queued work were not dropped)
    assert time.perf_counter() - began < one_attack / 3, one_attack
    assert model.queue.cancelled - cancelled == 3 and model.queue.waiting == 0
    gc.collect()  # the running job stopped by Cancelled: its exception was taken, so asyncio logs nothing
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def test_clients_take_turns_so_one_backlog_holds_another_for_one_request(served, monkeypatch):
    model, url = served
    ran, attack_ = [], model.attack
    monkeypatch.setattr(model, "attack", lambda body: ran.append(body.index) or attack_(body))
    release = blocked(model.queue)
    sent = [("a", "a1", 0), ("a", "a2", 1), ("a", "a3", 2), ("b", "b1", 3)]  # page b asks after a's three
    senders = [threading.Thread(target=httpx.post, args=(url + "/api/attack",), kwargs=dict(
        json={"index": index, "steps": 2}, headers={"X-Client": client, "X-Ticket": ticket}, timeout=60))
        for client, ticket, index in sent]
    for k, sender in enumerate(senders):
        sender.start()
        while model.queue.waiting < k + 1:  # in this order
            time.sleep(0.01)
    try:
        places = {t: httpx.get(url + "/api/queue", params={"ticket": t}).json()["ahead"] for _, t, _ in sent}
    finally:
        release.set()
    for sender in senders:
        sender.join()
    assert places == {"a1": 0, "b1": 1, "a2": 2, "a3": 3} and ran == [0, 3, 1, 2]


def test_waiting_work_of_a_client_that_left_leaves_the_queue_at_once(served):
    model, url = served
    release, cancelled = blocked(model.queue), model.queue.cancelled
    try:
        abandon(url, 5)
        deadline = time.monotonic() + 10
        while model.queue.cancelled == cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert model.queue.cancelled == cancelled + 1 and model.queue.waiting == 0  # the model still busy
    finally:
        release.set()
    assert attack(url, 2).status_code == 200


@pytest.mark.parametrize("host, status", [("evil.example", 400), ("127.0.0.1.evil.example", 400),
                                          ("localhost:8765", 200), ("127.0.0.1", 200)])
def test_only_loopback_host_names_are_answered(served, host, status):
    response = httpx.get(served[1] + "/api/info", headers={"Host": host})
    assert response.status_code == status
    if status == 400:
        assert "unknown Host" in response.json()["detail"]


def test_allowed_hosts_and_host_names():
    assert allowed_hosts("127.0.0.1") == ("127.0.0.1", "localhost", "::1")
    assert allowed_hosts("192.168.1.5")[0] == "192.168.1.5" and allowed_hosts("0.0.0.0") is None
    assert [host_name(h) for h in ["a:1", "[::1]:8765", "::1", "b"]] == ["a", "::1", "::1", "b"]


def test_a_body_over_the_cap_is_refused_before_it_is_read(served):
    host, port = served[1].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # headers only: the server must answer without waiting for the 100 MB
        sock.sendall(b"POST /api/perceive HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                     b"boundary=x\r\nContent-Length: 100000000\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(4096) or b"}"
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413")
    assert f"the request is 100,000,000 bytes; at most {explorer.MAX_BODY_BYTES:,} are accepted" in answer


def test_no_pages_that_need_a_cdn(served):
    assert [httpx.get(served[1] + path).status_code for path in ["/docs", "/redoc"]] == [404, 404]
    assert "<script src=\"/explorer.js\">" in httpx.get(served[1] + "/").text


def test_a_port_in_use_is_one_error_line(good_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["explore", str(good_run), "--port", str(port)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: port {port} on 127.0.0.1 is already in use (another explorer?); choose another with "
        f"--port, e.g. --port {port + 1}"]


def test_runs_of_other_image_shapes_cannot_be_compared(good_run, tmp_path, monkeypatch):
    from perceptreg.core import models
    from perceptreg.runs import TrainedRun

    other = tmp_path / "other"
    shutil.copytree(good_run, other)
    real = TrainedRun.model
    monkeypatch.setattr(TrainedRun, "model", lambda self, *args, **kw: real(self, *args, **kw)
                        if self.path == good_run else models.build("svhn", 10))  # a run of 3x32x32 images
    result = CliRunner().invoke(main, ["explore", str(good_run), str(other), "--port", "1"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: runs to compare must take images of one shape into the same classes: {good_run.name} takes "
        f"(1, 28, 28) into 10, other takes (3, 32, 32) into 10"]


@pytest.fixture(scope="module")
def two_attach_runs(attach_run, tmp_path_factory):
    """The session's attach run (layers stem, fc1), and one of the same net at stem and block1
    (no fc1), served together: the first run's layers choose what both show."""
    from helpers import USER_NET

    from perceptreg.adversarial.attacks import AttackSettings
    from perceptreg.attaching.attach_run import run_attach
    from perceptreg.core.config import AttachConfig

    other = tmp_path_factory.mktemp("attach-other") / "other"
    run_attach(AttachConfig(model=f"{USER_NET}:build", layers=("stem", "block1"), train_size=100, epochs=1,
                            random_weights=True, seed=1), other, AttackSettings(steps=1), attack_images=10,
               progress=False)
    server, url = explorer.serve_in_background(explorer.create_app([open_run(attach_run), open_run(other)]))
    alone, alone_url = explorer.serve_in_background(explorer.create_app(open_run(other), layer="stem"))
    yield url, alone_url
    server.should_exit = alone.should_exit = True


@pytest.mark.slow  # over 2 s alone: the fast lane leaves it out
def test_every_compared_run_follows_the_layer_chosen_or_says_it_lacks_it(two_attach_runs):
    url, alone = two_attach_runs
    assert httpx.get(url + "/api/info").json()["layers"] == ["stem", "fc1"]
    own_stem = httpx.get(alone + "/api/gallery", params={"limit": 2}).json()["items"]  # "other" alone, at stem
    own_deepest = httpx.get(alone + "/api/gallery", params={"limit": 2, "layer": "block1"}).json()["items"]
    stem = httpx.get(url + "/api/gallery", params={"limit": 2, "layer": "stem"}).json()["items"]
    assert [card["compared"][0]["perception"] for card in stem] == [card["perception"] for card in own_stem]
    assert [card["perception"] for card in own_stem] != [card["perception"] for card in own_deepest]
    lacks = "other has no layer fc1 (its layers: stem, block1)"
    for layer in ({}, {"layer": "fc1"}):  # the one served, fc1, and chosen
        gallery = httpx.get(url + "/api/gallery", params={"limit": 2, **layer}).json()["items"]
        assert [card["compared"] for card in gallery] == [[{"run": "other", "missing": lacks}]] * 2
        image = httpx.get(url + "/api/image", params={"index": 3, **layer}).json()
        assert image["compared"] == [{"run": "other", "missing": lacks}]
        attacked = httpx.post(url + "/api/attack", json={"index": 0, "steps": 1, **layer}, timeout=60).json()
        assert attacked["compared"] == [{"run": "other", "missing": lacks}]
        assert httpx.get(url + "/api/map", params=layer, timeout=60).json()["maps"][1] == {"run": "other",
                                                                                           "missing": lacks}
    upload = {"file": ("d.png", png_of_a_bar(), "image/png")}
    drawn = httpx.post(url + "/api/perceive", params={"layer": "stem"}, files=upload).json()
    assert drawn["compared"][0]["perception"] == httpx.post(alone + "/api/perceive", files=upload).json()["perception"]
    assert httpx.post(url + "/api/perceive", files=upload).json()["compared"] == [{"run": "other", "missing": lacks}]
    attacked = httpx.post(url + "/api/attack", json={"index": 0, "steps": 1, "layer": "stem"}, timeout=60).json()
    assert attacked["compared"][0]["run"] == "other" and len(attacked["compared"][0]["path"]) > 0


def png_of_a_bar() -> bytes:
    """A white bar on black, 28x28, as a PNG upload."""
    import io

    from PIL import Image

    picture = Image.new("L", (28, 28))
    picture.paste(255, (12, 4, 16, 24))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
