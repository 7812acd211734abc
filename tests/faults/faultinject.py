"""Faults injected into the registry's own boto3 clients, through botocore's events.

The registry under test makes its S3 and DynamoDB calls with real boto3 clients to a
moto server. Two hooks sit on those clients (``client.meta.events``):

- ``before-call`` numbers each API call the registry makes while the injector is
  armed (one number per call, however many times the SDK sends it);
- ``before-send`` runs before every HTTP attempt of a call, retries included. For the
  call chosen to fail, it answers instead of moto, raises what a broken connection
  raises, or sends the request to moto itself and then loses the reply.

So the SDK's own retry logic (botocore's "standard" mode, as storage/clients.py
configures it) sees each fault exactly as it would see one from AWS: it decides
whether to retry, backs off, spends its retry quota. Only its back-off sleeps are
shortened (``QuickBackoff``), so that a few hundred faulted calls fit in a test run.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError
from botocore.httpsession import URLLib3Session
from urllib3.exceptions import ProtocolError

SERVICES = ("s3", "dynamodb")


@dataclass(frozen=True)
class Fault:
    """One way for an API call to fail.

    ``every_attempt``: every HTTP attempt of the call fails, so the error reaches the
    registry once the SDK gives up; otherwise only the first attempt fails and the
    SDK's retry should absorb it. ``applied``: the request reaches moto (its effect
    happens) and only the reply is lost."""

    name: str
    every_attempt: bool
    applied: bool = False


FAULTS = (
    # An error answer: S3 InternalError (500), DynamoDB InternalServerError (500).
    Fault("error", every_attempt=True),
    # Throttling: S3 SlowDown (503), DynamoDB ProvisionedThroughputExceededException
    # and ThrottlingException (400), alternately.
    Fault("throttle", every_attempt=True),
    # The connection times out before an answer (read and connect timeouts, alternately):
    # the request never took effect.
    Fault("timeout", every_attempt=True),
    # The request took effect, then the connection dropped mid-reply (for GetObject:
    # half of the body arrives, then the connection breaks).
    Fault("lost-reply", every_attempt=True, applied=True),
    # Once only, then the SDK's retry goes through: an error answer, and a reply lost
    # after the request took effect (the retry sends an applied request again).
    Fault("blip", every_attempt=False),
    Fault("blip-applied", every_attempt=False, applied=True),
)


@dataclass
class Stats:
    """Counts for the whole run, printed by conftest.py at the end."""

    operations: int = 0  # faulted operations (one per fault at call k of a scenario)
    faults: int = 0  # HTTP attempts answered by the injector
    images_lost_or_corrupt: int = 0
    outcomes: Counter = field(default_factory=Counter)  # how each faulted operation ended
    notes: Counter = field(default_factory=Counter)  # things worth reporting that are not defects
    backoff_asked: float = 0.0  # seconds of back-off the SDK asked for
    killed_requests: int = 0


STATS = Stats()


class QuickBackoff:
    """Stands in for the ``time`` module of ``botocore.endpoint``, whose only use of it
    is the sleep between retries: the SDK's delays are recorded, and slept 1/100th."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def sleep(self, seconds: float) -> None:
        self._stats.backoff_asked += seconds
        time.sleep(seconds / 100)


@dataclass
class _Call:
    number: int
    service: str
    operation: str
    attempts: int = 0


class _BrokenStream:
    """A response body whose connection breaks half way, as urllib3 reports it."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)[: len(data) // 2]
        self._done = False

    def read(self, amt: int | None = None) -> bytes:
        if self._data:
            size = len(self._data) if amt is None else min(amt, len(self._data))
            chunk, self._data = bytes(self._data[:size]), self._data[size:]
            return chunk
        raise ProtocolError("Connection broken: IncompleteRead (injected)")

    def stream(self, amt: int = 1024) -> Iterator[bytes]:
        while True:
            yield self.read(amt)

    def close(self) -> None:
        pass


def _error_response(request: Any, service: str, status: int, code: str) -> AWSResponse:
    if service == "s3":
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>injected</Message><RequestId>fault</RequestId></Error>"
        ).encode()
        headers = {"Content-Type": "application/xml"}
    else:
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}
        ).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    headers["Content-Length"] = str(len(body))
    return AWSResponse(request.url, status, headers, _WholeStream(body))


class _WholeStream:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, amt: int | None = None) -> bytes:
        data, self._data = self._data, b""
        return data

    def stream(self, amt: int = 1024) -> Iterator[bytes]:
        if self._data:
            yield self.read()

    def close(self) -> None:
        pass


class FaultInjector:
    """Numbers the API calls of the registry's clients and fails the one chosen."""

    def __init__(self, clients: Any, stats: Stats = STATS) -> None:
        self._stats = stats
        self._lock = threading.Lock()
        self._local = threading.local()
        self._http = URLLib3Session()  # our own connection to moto, for applied requests
        self._armed = False
        self._numbers: Iterator[int] = itertools.count(1)
        self._target: int | None = None
        self._fault: Fault | None = None
        self.calls: list[_Call] = []
        self.injected = 0
        # TransactWriteItems is idempotent on AWS for a ClientRequestToken (botocore
        # fills one in and keeps it across retries); moto ignores it. When we lose the
        # reply of an applied transaction, a retry with its token is answered as AWS
        # would: success, applied once.
        self._applied_tokens: set[str] = set()
        for client in (clients.s3, clients.dynamodb):
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}", self._before_call)
            client.meta.events.register(f"before-send.{service}", self._before_send)

    @contextmanager
    def armed(self, target: int | None = None, fault: Fault | None = None) -> Iterator[list[_Call]]:
        """Number the calls made meanwhile; fail call ``target`` (1-based) with ``fault``.
        Without a target: only count (a dry run)."""
        with self._lock:
            self._numbers, self.calls, self.injected = itertools.count(1), [], 0
            self._target, self._fault, self._armed = target, fault, True
        try:
            yield self.calls
        finally:
            with self._lock:
                self._armed = False
                self._stats.faults += self.injected

    def _before_call(self, model: Any, **_: Any) -> None:
        call = None
        with self._lock:
            if self._armed:
                call = _Call(next(self._numbers), model.service_model.service_id.hyphenize(), model.name)
                self.calls.append(call)
        self._local.call = call

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        call: _Call | None = getattr(self._local, "call", None)
        if call is None:
            return None
        with self._lock:
            chosen = self._armed and call.number == self._target
            fault = self._fault
        call.attempts += 1
        if not chosen or fault is None:
            return None
        if call.operation == "TransactWriteItems":
            token = json.loads(request.body).get("ClientRequestToken")
            if token in self._applied_tokens:
                return AWSResponse(
                    request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _WholeStream(b"{}")
                )
        if call.attempts > 1 and not fault.every_attempt:
            return None
        with self._lock:
            self.injected += 1
        return self._inject(fault, call, request)

    def _inject(self, fault: Fault, call: _Call, request: Any) -> AWSResponse | None:
        odd = call.number % 2 == 1
        if fault.applied:
            response = self._http.send(request)
            content = response.content  # the whole reply, read before it is "lost"
            if call.operation == "TransactWriteItems" and response.status_code == 200:
                self._applied_tokens.add(json.loads(request.body).get("ClientRequestToken"))
            if request.stream_output and response.status_code == 200:
                return AWSResponse(request.url, 200, response.headers, _BrokenStream(content))
            raise ConnectionClosedError(endpoint_url=request.url)
        if fault.name == "timeout":
            if odd:
                raise ReadTimeoutError(endpoint_url=request.url, error="injected")
            raise ConnectTimeoutError(endpoint_url=request.url, error="injected")
        if fault.name == "throttle":
            if call.service == "s3":
                return _error_response(request, "s3", 503, "SlowDown")
            code = "ProvisionedThroughputExceededException" if odd else "ThrottlingException"
            return _error_response(request, "dynamodb", 400, code)
        if call.service == "s3":
            return _error_response(request, "s3", 500, "InternalError")
        return _error_response(request, "dynamodb", 500, "InternalServerError")


def each_fault(count: int, everything: bool = False) -> Iterator[tuple[int, Fault]]:
    """(k, fault) for every call k = 1..count: at each call, a lost reply that the SDK
    retries (blip-applied: the request is sent again after it took effect, the fault
    that most often finds a defect), and one of the other faults, in turn from one call
    to the next. ``everything`` (SKYPORT_FAULTS=all), or an operation of at most three
    calls: every fault at every call."""
    others = [fault for fault in FAULTS if fault.name != "blip-applied"]
    applied_retry = next(fault for fault in FAULTS if fault.name == "blip-applied")
    for number in range(1, count + 1):
        if everything or count <= 3:
            yield from ((number, fault) for fault in FAULTS)
            continue
        yield number, others[(number - 1) % len(others)]
        yield number, applied_retry
