"""Who may call the scoring service and how much they may send: API keys and the request body's size.

With keys set (`serve --api-key-file F`, one key per line, `#` comments; or $SEPSIS_FUSION_API_KEY), the
routes that score or describe what is served (/score, /metrics, /health) require `Authorization: Bearer
<key>`; a key is compared with each accepted one in constant time (hmac.compare_digest), so the time of a
refusal does not tell how much of a key was right. A refusal is 401 and is logged without what was sent.
/livez and /readyz stay open for probes, /docs and /openapi.json for clients. A body larger than
--max-body-bytes is refused with 413 before it is read, from its Content-Length; a POST without one is 411.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi.responses import JSONResponse

from sepsis_fusion.model.errors import SepsisFusionError

API_KEY_ENV = "SEPSIS_FUSION_API_KEY"
PROTECTED = ("/score", "/metrics", "/health")


class ApiKeyError(SepsisFusionError):
    """The API key file cannot be used; the message names it and why."""


def load_api_keys(path: str | None, environ: dict | None = None) -> list[bytes]:
    """The accepted keys: the file's lines (blank lines and # comments skipped) and $SEPSIS_FUSION_API_KEY."""
    keys = []
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ApiKeyError(f"--api-key-file {path}: {exc.strerror or exc}") from None
        keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
        if not keys:
            raise ApiKeyError(f"--api-key-file {path} holds no key (one key per line)")
    from_env = (environ if environ is not None else os.environ).get(API_KEY_ENV, "").strip()
    if from_env:
        keys.append(from_env)
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ApiKeyError(f"{len(short)} API key(s) shorter than 16 characters: use long random keys")
    return [k.encode() for k in keys]


def access_middleware(keys: list[bytes], max_body_bytes: int, logger: logging.Logger) -> Callable:
    """HTTP middleware: 413/411 for bodies over the size or without a length, 401 without an accepted key."""

    def refuse(request, status: int, detail: str, headers: dict | None = None) -> JSONResponse:
        body = {"detail": detail, "request_id": getattr(request.state, "request_id", None)}
        return JSONResponse(body, status, headers=headers)

    async def middleware(request, call_next: Callable[..., Awaitable]):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return refuse(request, 411, "a request body needs a Content-Length")
            if not length.isdigit() or int(length) > max_body_bytes:
                return refuse(request, 413, f"the request body is over {max_body_bytes} bytes (--max-body-bytes)")
        if keys and request.url.path in PROTECTED:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            accepted = False
            for key in keys:  # every key compared, whichever matches
                accepted |= scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key)
            if not accepted:
                logger.warning("refused %s %s: no accepted API key", request.method, request.url.path)
                return refuse(
                    request, 401, "an API key is needed: Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
                )
        return await call_next(request)

    return middleware
