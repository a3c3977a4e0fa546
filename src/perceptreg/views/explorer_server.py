"""The explorer's serving rules: one model thread behind a bounded queue that clients take
turns in, work of a client that left is dropped or stopped, the library's errors as HTTP
answers, requests checked before they are read, and the listening socket.

    queue = ModelQueue(models, capacity=8)
    result = await queue.run(request, work, model, x)   # 503 when full; cancelled if the client leaves
    queue.ahead("ticket-1")   # requests before the one sent with the header `X-Ticket: ticket-1`
    app.add_middleware(RequestGuard, hosts=("127.0.0.1", "localhost"), max_body=2_000_000)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import socket
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from perceptreg.core.errors import FormatError, NotAvailableError, PerceptregError, TooLargeError

QUEUE_CAPACITY = 8  # waiting model requests; more would only lengthen everyone's wait
DISCONNECT_POLL_S = 0.05  # how often a waiting request checks that its client is still there
TICKET_HEADER = "x-ticket"  # a request's name of its own choosing, to ask for its place in the queue
CLIENT_HEADER = "x-client"  # a page's name of its own choosing: its requests take turns with other pages'


class Cancelled(Exception):
    """Raised inside the model's forward when the client that asked for the work left."""


@contextlib.contextmanager
def cancellable(models, flag: threading.Event):
    """Every forward of ``models`` first checks ``flag``: a 500-step attack stops within one
    step of its client leaving (PGD runs the model once per step)."""
    def check(module, inputs):
        if flag.is_set():
            raise Cancelled
    handles = [module.register_forward_pre_hook(check) for model in models for module in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(eq=False)
class Job:
    """One request's model work, waiting or running; ``result`` is what its request awaits."""

    ticket: object  # the request's X-Ticket, else an object nobody asks about
    client: str  # whose turn it takes: the page's X-Client, else the connection's address
    work: Callable
    args: tuple
    flag: threading.Event = field(default_factory=threading.Event)  # set: its client left
    result: Future = field(default_factory=Future)
    started: bool = False


class ModelQueue:
    """Model work on one thread (an attack sets the model's flags, so two must not overlap),
    the clients taking turns: the waiting job of the client served longest ago runs next,
    each client's own in the order sent. So one client's backlog delays another's request
    by one job, not by the backlog. At most ``capacity`` requests wait; further ones get a
    503 with Retry-After. Work of a client that left is dropped, or stopped while it runs.

    Request handlers await the work instead of blocking a thread, so pages and static
    answers are served while the model is busy. A request sent with an ``X-Ticket`` header
    can be found in the queue by that ticket (``ahead``), so a page can say where it stands.
    """

    def __init__(self, models, capacity: int = QUEUE_CAPACITY):
        self.models, self.capacity = list(models), capacity
        self._jobs: list[Job] = []  # submitted and not finished, in the order they came
        self._served: dict[str, int] = {}  # per client, when its last job started (a count)
        self._starts = itertools.count()
        self.cancelled = 0  # jobs stopped because their client left (for tests and benchmarks)
        self._lock = threading.Lock()
        # One intra-op thread: on one image, PyTorch's OpenMP team called from a thread other
        # than the main one made an attack 2.7x slower here (bench/explorer_latency.py).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perceptreg-model",
                                          initializer=torch.set_num_threads, initargs=(1,))

    async def run(self, request: Request, work, *args):
        """``work(*args)`` on the model thread in its client's turn; its result, a 503 when the
        queue is full, or nothing (a 499 nobody reads) when the client disconnects first."""
        client = request.headers.get(CLIENT_HEADER) or (request.client.host if request.client else "")
        job = Job(request.headers.get(TICKET_HEADER) or object(), client, work, args)
        self._enter(job)
        self._worker.submit(self._next)  # one turn of the model thread per job
        result = asyncio.wrap_future(job.result)
        while not result.done():
            await asyncio.wait([result], timeout=DISCONNECT_POLL_S)
            if not result.done() and await request.is_disconnected():
                self._drop(job)
                result.add_done_callback(lambda done: done.cancelled() or done.exception())  # nobody awaits it
                raise HTTPException(499, "the client closed the connection")
        try:
            return result.result()
        except (Cancelled, CancelledError) as err:
            raise HTTPException(499, "the client closed the connection") from err

    @property
    def waiting(self) -> int:
        """Requests submitted to the model thread and not finished, the running one included."""
        return len(self._jobs)

    def ahead(self, ticket: str) -> int | None:
        """How many requests the model serves before the one with ``ticket`` (0: it runs now);
        None when no such request waits (not yet arrived, or already answered)."""
        with self._lock:
            tickets = [job.ticket for job in self._order()]
        return tickets.index(ticket) if ticket in tickets else None

    def _order(self) -> list[Job]:
        """The unfinished jobs as the model serves them: the running one, then by turns."""
        served, waiting = dict(self._served), [job for job in self._jobs if not job.started]
        order = [job for job in self._jobs if job.started]
        for turn in itertools.count(max(served.values(), default=0) + 1):
            if not waiting:
                return order
            job = min(waiting, key=lambda j: served.get(j.client, -1))  # the first such in arrival order
            waiting.remove(job)
            order.append(job)
            served[job.client] = turn

    def _enter(self, job: Job) -> None:
        with self._lock:
            if len(self._jobs) >= self.capacity:
                raise HTTPException(503, f"the explorer is busy ({len(self._jobs)} requests wait for the model); "
                                         f"try again in a moment", headers={"Retry-After": "2"})
            self._jobs.append(job)

    def _drop(self, job: Job) -> None:
        """``job``'s client left: a waiting job leaves the queue, a running one stops at its next forward."""
        job.flag.set()
        with self._lock:
            self.cancelled += 1
            if not job.started:
                self._jobs.remove(job)
                job.result.cancel()

    def _next(self) -> None:
        """One turn of the model thread: the next job by turns runs (none when its client left)."""
        with self._lock:
            waiting = self._order()[sum(job.started for job in self._jobs):]
            if not waiting:
                return
            job = waiting[0]
            job.started, self._served[job.client] = True, next(self._starts)
        outcome, error = None, None
        try:
            with cancellable(self.models, job.flag):
                outcome = job.work(*job.args)
        except BaseException as err:  # noqa: BLE001 (handed to the request, which raises it)
            error = err
        with self._lock:  # out of the queue before it is answered: a client told "done" finds it gone
            self._jobs.remove(job)
        if error is None:
            job.result.set_result(outcome)
        else:
            job.result.set_exception(error)


# --- errors as HTTP answers ----------------------------------------------------------------------

STATUS = {TooLargeError: 413, FormatError: 415, NotAvailableError: 409}  # other PerceptregErrors: 422


def library_error(request: Request, error: PerceptregError) -> JSONResponse:
    """The one place the explorer's errors become HTTP answers: the status of their kind, the
    message as the detail."""
    status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 422)
    return JSONResponse(status_code=status, content={"detail": str(error)})


RULES = {  # pydantic's error types, said as the page says them: "steps must be at most 500"
    "less_than_equal": "must be at most {le}", "less_than": "must be less than {lt}",
    "greater_than": "must be greater than {gt}", "greater_than_equal": "must be at least {ge}",
    "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
    "int_type": "must be a whole number", "float_type": "must be a number", "string_type": "must be text",
    "float_parsing": "must be a number", "finite_number": "must be a finite number",
    "literal_error": "must be {expected}", "extra_forbidden": "is not a setting of this request",
    "missing": "is required", "string_too_long": "must be at most {max_length} characters",
}


def in_words(error: dict) -> str:
    """One validation error as a sentence naming the field."""
    field = next((str(part) for part in reversed(error.get("loc", ())) if isinstance(part, str)), "the request")
    if field == "body":
        field = "the request"
    rule = RULES.get(error.get("type", ""))
    context = {key: str(value) for key, value in (error.get("ctx") or {}).items()}
    try:
        return f"{field} {rule.format(**context)}" if rule else f"{field}: {error.get('msg', 'invalid')}"
    except KeyError:
        return f"{field}: {error.get('msg', 'invalid')}"


def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """A request that does not fit its schema: 422, each field named with the reason in words.
    (FastAPI's own handler echoes the input back, and a NaN in it cannot be written as JSON: a 500.)"""
    detail = [{"loc": list(e.get("loc", ())), "msg": in_words(e)} for e in error.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


def answer_errors(app) -> None:
    """``app``'s errors as HTTP answers: the library's by their kind (``library_error``), a
    request that does not fit its schema with each field named (``invalid_request``)."""
    app.add_exception_handler(PerceptregError, library_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


class RequestGuard:
    """ASGI middleware: answers a request whose Host is not this server's (DNS rebinding: a
    web page that renames its own domain to 127.0.0.1 would otherwise reach the model) with
    400, and one whose Content-Length exceeds ``max_body`` with 413 before its body is read.
    A body without a length is cut off as soon as it passes the limit."""

    def __init__(self, app, hosts: tuple[str, ...] | None, max_body: int):
        self.app, self.hosts, self.max_body = app, hosts, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        host = host_name(headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return await refuse(scope, receive, send, 400, f"unknown Host {host!r}: open the explorer at "
                                                           f"http://{self.hosts[0]}:PORT")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return await refuse(scope, receive, send, 413, f"the request is {int(length):,} bytes; at most "
                                                           f"{self.max_body:,} are accepted")
        return await self.app(scope, self._capped(receive), send)

    def _capped(self, receive):
        seen = 0

        async def capped():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413, f"the request is over {self.max_body:,} bytes; at most "
                                         f"{self.max_body:,} are accepted")
            return message
        return capped


def host_name(header: str) -> str:
    """The name in a Host header, without the port: "127.0.0.1:8765" -> "127.0.0.1", "[::1]:80" -> "::1"."""
    if header.startswith("["):
        return header[1:header.find("]")]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def refuse(scope, receive, send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The Host names the explorer answers: loopback and the bound address. Bound to every
    address (0.0.0.0, ::), the names it is reached by are unknown: no allowlist."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return tuple(dict.fromkeys((host, "127.0.0.1", "localhost", "::1")))


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; a port in use is a PerceptregError naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a just-stopped explorer's port is free
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise PerceptregError(f"port {port} on {host} is already in use (another explorer?); "
                                  f"choose another with `port`, e.g. --port {port + 1}") from err
        raise PerceptregError(f"cannot listen on {host}:{port} ({err.strerror}); check `host`") from err
    sock.listen(128)
    return sock


def serve_in_background(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Serve ``app`` with uvicorn on a daemon thread (for notebooks, tests and benchmarks).

    ``port=0`` picks a free port. Returns (server, base URL); stop with
    ``server.should_exit = True``.
    """
    import uvicorn

    sock = listening_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the explorer did not start on {host}:{port}")
        time.sleep(0.02)
    return server, f"http://{host}:{sock.getsockname()[1]}"
