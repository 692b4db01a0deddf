"""What every request passes through: its id, the API key check, and one access-log line.

A plain ASGI middleware, not Starlette's BaseHTTPMiddleware: that one relays a streamed
body through a memory channel, a task switch per event, and under 64 streams it cost
the event loop more than the events themselves.

The request id is the client's X-Request-ID when it sends a short one (so a proxy's id
carries through), else a new one; it comes back in the X-Request-ID header, as the
completion's id, and on the log line.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable

from charlstm.serve.protocol import error

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(scope) -> str:
    """The id the middleware gave this request (set before any handler runs)."""
    return scope["state"]["request_id"]


def note_chars(scope, chars: int) -> None:
    """Characters generated for this request, for its log line."""
    scope["state"]["chars"] = chars


def note_first_text(scope) -> None:
    """The first generated text is going out now (time to first character)."""
    scope["state"].setdefault("first", time.perf_counter())


# The names a server on this machine answers to unless told more (--allow-host): a
# request naming another Host is a page elsewhere that rebound its name to this address
# (DNS rebinding), the attack local model servers have had advisories for.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(value: str) -> str:
    """A Host header's name, without its port ("[::1]:8000" -> "::1")."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class AccessMiddleware:
    def __init__(
        self,
        app,
        say: Callable[[str, int], None],
        api_key: str | None = None,
        hosts: frozenset[str] = LOOPBACK_NAMES,
        cors: str | None = None,
        max_body: int = 8 << 20,
    ):
        self.app, self.say, self.api_key = app, say, api_key
        self.max_body = max_body  # bytes of one request's body, counted as they arrive
        self.hosts = frozenset(h.lower() for h in hosts)  # "*": any
        self.cors = cors
        self.statuses: Counter[int] = Counter()  # requests answered, by status

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        started = time.perf_counter()
        scope.setdefault("state", {})["request_id"] = rid
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", rid.encode())]  # fmt: skip
            await send(message)

        try:
            # a browser's CORS preflight carries no credentials, by the standard
            preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in headers
            # the playground page is the package's own file, no data: a browser must load
            # it to be asked for the key, which its every request then carries
            page = scope["method"] == "GET" and scope.get("path") == "/"
            foreign = self._foreign(headers)
            declared = headers.get(b"content-length", b"0")
            if foreign is not None:
                await self._send_error(send_with_id, 403, foreign, "forbidden")
            elif not declared.isdigit() or int(declared) > self.max_body:
                await self._too_large(send_with_id)
            elif (
                self.api_key is not None
                and not (preflight or page)
                and not self._key_matches(headers)
            ):
                await self._refuse(send_with_id)
            else:
                await self._bounded(scope, receive, send_with_id, lambda: status)
        finally:
            self.statuses[status] += 1
            took = time.perf_counter() - started
            state = scope["state"]
            made = f" {state['chars']:,} chars" if "chars" in state else ""
            if "first" in state:
                made += f", first after {(state['first'] - started) * 1000:.0f} ms"
            path = scope.get("path", "")
            self.say(f"{rid} {scope['method']} {path} {status} {took * 1000:.0f} ms{made}", status)

    async def _bounded(self, scope, receive, send, status: Callable[[], int]) -> None:
        """The app, reading a body that may not pass max_body: counted as it arrives, a
        body without a length is cut off there too (413, and to the app the client has
        gone), never buffered whole."""
        received, cut = 0, False

        async def counted():
            nonlocal received, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                cut = True
                if status() == 500:  # nothing answered yet
                    await self._too_large(send)
                return {"type": "http.disconnect"}
            return message

        async def unless_cut(message):
            if not cut:
                await send(message)

        await self.app(scope, counted, unless_cut)

    async def _too_large(self, send) -> None:
        message = (
            f"the request body is over {self.max_body:,} bytes (or its length is not a number)"
        )
        await self._send_error(send, 413, message, "invalid_request_error")

    def _foreign(self, headers: dict[bytes, bytes]) -> str | None:
        """Why a request comes from outside what this server answers, or None: a Host
        not allowed, or a browser's Origin that is neither this server nor --cors."""
        host = headers.get(b"host", b"").decode("latin-1")
        if "*" not in self.hosts and host_name(host) not in self.hosts:
            return (f"Host {host[:100]!r} is not a name this server answers to (add it with "
                    "--allow-host)")  # fmt: skip
        origin = headers.get(b"origin", b"").decode("latin-1")
        same = origin.split("://", 1)[-1].lower() == host.lower()
        if origin and not same and origin != self.cors and origin != "null":
            return f"Origin {origin[:100]!r} may not use this server (allow it with --cors)"
        return None

    def _key_matches(self, headers: dict[bytes, bytes]) -> bool:
        # "Bearer KEY"; the scheme's name is case-insensitive (RFC 7235), the key is not
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        right = secrets.compare_digest(given.strip(), self.api_key.encode())
        return scheme.lower() == b"bearer" and right

    @staticmethod
    async def _refuse(send) -> None:
        message = "missing or wrong API key (Authorization: Bearer KEY)"
        await AccessMiddleware._send_error(send, 401, message, "authentication_error")

    @staticmethod
    async def _send_error(send, status: int, message: str, kind: str) -> None:
        response = error(status, message, kind)  # the one error shape, sent before the app
        await send({"type": "http.response.start", "status": status,
                    "headers": response.raw_headers})  # fmt: skip
        await send({"type": "http.response.body", "body": response.body})

    def summary(self) -> str:
        by_status = ", ".join(f"{n:,} x {s}" for s, n in sorted(self.statuses.items()))
        return f"{sum(self.statuses.values()):,} requests ({by_status or 'none'})"
