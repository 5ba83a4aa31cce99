"""Loopback fakes of the Anthropic Messages and OpenAI Chat Completions APIs.

They answer with the recorded wire fixtures of :mod:`support.llm_fixtures`: a streamed call
(``"stream": true`` in the JSON body) gets the fixture's events as a chunked
``text/event-stream``, one event per chunk; any other call gets the fixture's message as a
JSON body. ``sent`` keeps each body exactly as the server framed it, to compare with a trace.
"""

from __future__ import annotations

import json
from typing import Any

from support.llm_fixtures import ANTHROPIC_TEXT, CHAT_TEXT, Stream
from support.server import Request, ScriptedServer, Step, response, sse_response

ROUTES: dict[str, Stream] = {"/v1/messages": ANTHROPIC_TEXT, "/v1/chat/completions": CHAT_TEXT}


class FakeLLM(ScriptedServer):
    """One server for both APIs; ``sent`` lists each body as the server sent it."""

    def __init__(self) -> None:
        super().__init__(self._reply)
        self.sent: list[bytes] = []

    def _reply(self, req: Request) -> list[Step]:
        stream = ROUTES.get(req.target.split("?", 1)[0])
        if req.method != "POST" or stream is None:
            body = b'{"type":"error","error":{"type":"not_found_error","message":"no route"}}'
            return response(404, body, [("Content-Type", "application/json")])
        asked: Any = json.loads(req.body or b"{}")
        if asked.get("stream"):
            self.sent.append(stream.body)
            return sse_response(stream.events, headers=[("request-id", "req_fake")])
        body = json.dumps(stream.message, ensure_ascii=False).encode()
        self.sent.append(body)
        return response(200, body, [("Content-Type", "application/json")])
