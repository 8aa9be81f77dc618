"""Request body limits: bodies larger than ``serve.max_body_bytes`` get 413, JSON nested too deep or with too
many values 422, before anything parses them (the JSON parser recurses: deep nesting would crash it)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.errors import ApiError
from orchestrator.policy.untrusted import UntrustedLimits, json_problem

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_LIMITS = UntrustedLimits(max_depth=32, max_nodes=20_000)  # a change request is a few levels deep


class BodyLimit:
    """ASGI middleware: refuse a declared or streamed body over ``max_bytes`` with 413, and JSON over
    :data:`JSON_LIMITS` with 422 (both as JSON errors)."""

    def __init__(self, app: ASGIApp, max_bytes: int, limits: UntrustedLimits = JSON_LIMITS) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = limits

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(413, "too-large", f"the request body is larger than {self.max_bytes} bytes")
        await error.response()(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        problem = json_problem(bytes(body), self.limits)
        if problem is not None:
            await ApiError(422, "too-complex", f"the request body is refused: {problem}").response()(
                scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
