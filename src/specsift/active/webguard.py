"""Request checks in front of the labelling app (one ASGI middleware, before any route).

* **Host** (without a token): only ``127.0.0.1``, ``localhost``, ``[::1]`` (and other
  loopback addresses), with the server's port when it is known.  A page on another site
  whose DNS name is re-pointed at 127.0.0.1 (DNS rebinding) sends its own name as Host, so
  it can neither read the pool nor write labels.
* **Origin** on state-changing requests (POST …): when a browser sends one, it must be
  this server's own origin; ``Sec-Fetch-Site: cross-site`` is refused too.
* **Token** (when set): ``?token=``, ``Authorization: Bearer`` or the cookie set after the
  first visit; compared in constant time as bytes (a non-ASCII token is a 401, not a crash).
* **Body size**: more than ``max_body`` bytes (1 MB by default) is answered 413 before
  the route parses anything.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["Guard", "MAX_BODY", "check_token_text"]

MAX_BODY = 1 << 20
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_COOKIE = "specsift_token"


def check_token_text(token: str) -> str:
    """A token must be printable ASCII without spaces, ; or , (it travels in a cookie)."""
    if not token or not token.isascii() or not token.isprintable() or any(c in token for c in " ;,\"\\"):
        raise ValueError("--token: use printable ASCII without spaces, quotes, ; , or \\")
    return token


def is_loopback(name: str) -> bool:
    """localhost or a loopback address (the only hosts served without a token)."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit("//" + value)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


class Guard:
    """The checks above, as pure ASGI (so a body is counted before anything buffers it)."""

    def __init__(self, app, token: str | None = None, port: int | None = None,
                 max_body: int = MAX_BODY):
        self.app, self.port, self.max_body = app, port, int(max_body)
        self.token = check_token_text(token).encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is not None:
            return await JSONResponse({"detail": refusal[1]}, refusal[0])(scope, receive, send)
        if scope["method"] not in _SAFE_METHODS:
            receive = await self._bounded_body(request, receive)
            if receive is None:
                return await JSONResponse(
                    {"detail": f"request body larger than {self.max_body} bytes"}, 413
                )(scope, _empty, send)
        if self.token is not None and request.query_params.get("token"):
            send = self._with_cookie(send)
        return await self.app(scope, receive, send)

    # -- the checks ------------------------------------------------------------------
    def _refusal(self, request: Request) -> tuple[int, str] | None:
        host = request.headers.get("host", "")
        if self.token is None:
            name, port = _split_host(host)
            if name is None or not is_loopback(name) or (
                    self.port is not None and (port or 80) != self.port):
                return 403, ("Host header not allowed: open the page as http://127.0.0.1"
                             + (f":{self.port}" if self.port else "") + "/ (or give --token)")
        if self.token is not None and not self._token_ok(request):
            return 401, "a valid token is required (?token=…)"
        if request.method not in _SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None:
                o = urlsplit(origin)
                if o.scheme not in ("http", "https") or o.netloc.lower() != host.lower():
                    return 403, "cross-origin request refused"
            if request.headers.get("sec-fetch-site") == "cross-site":
                return 403, "cross-site request refused"
        return None

    def _token_ok(self, request: Request) -> bool:
        candidates = [request.query_params.get("token"), request.cookies.get(_COOKIE)]
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            # headers arrive as latin-1 text of the raw bytes: back to those bytes
            candidates.append(auth[7:].strip().encode("latin-1", "replace"))
        for given in candidates:
            if not given:
                continue
            raw = given if isinstance(given, bytes) else given.encode("utf-8", "replace")
            if hmac.compare_digest(raw, self.token):
                return True
        return False

    async def _bounded_body(self, request: Request, receive):
        """The body read up to the limit and replayed, or None when it is larger."""
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return None
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive
            body = message.get("body", b"")
            total += len(body)
            if total > self.max_body:
                return None
            chunks.append(body)
            if not message.get("more_body"):
                break
        data, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": data, "more_body": False}
        return replay

    def _with_cookie(self, send):
        cookie = (f"{_COOKIE}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/").encode()

        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []),
                                                 (b"set-cookie", cookie)])
            await send(message)
        return wrapped


async def _empty():
    return {"type": "http.disconnect"}
