"""uvicorn's WebSocket protocol (its default, on websockets' sans-I/O core) with a bounded close,
for a client that stops reading. `bin/web`, `serve` and the tests' servers run it
(settings.UVICORN_WS_OPTIONS, `--ws`).

Stock uvicorn waits until its transport is writable before every message, the close frame
included, and starts its close timer only once that frame is written. A client that stops
reading fills the kernel's and the transport's buffers, so a server close (4008, slow consumer)
waits for good; its keepalive later fails the connection with 1011 and closes the transport,
which asyncio does only after sending what is buffered: never, for a client that never reads
(the socket, the consumer and its lease stay).

Here a server close is written at once, behind the data already buffered (TCP keeps the
order): a client that reads again receives what was sent, then the close code. If the closing
handshake is not complete `close_timeout` (10 s) later, because the client has not read up to
the close frame and answered it, the connection is aborted (TCP reset, no close code): a client
that never reads is gone within that bound (docs/limits.md).

It also takes several text messages at once (`SEND_FRAMES`, announced in the scope's
`extensions`): their frames go out in one write, once the transport is writable, and they are
UTF-8 bytes already (an event's message is rendered once for every connection,
`calls.realtime.publish.frame`). The events socket writes a burst of events this way, one
write instead of one await and one write per event.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

# ASGI extension: {"type": SEND_FRAMES, "texts": [bytes, ...]}, each a UTF-8 text message.
SEND_FRAMES = "calls.websocket.send_frames"


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_FRAMES] = {}

    async def send(self, message: Any) -> None:
        if message["type"] == SEND_FRAMES:
            await self._send_frames(message["texts"])
            return
        if message["type"] != "websocket.close" or not self._open():
            await super().send(message)
            return
        if self.transport.is_closing():
            return
        code = message.get("code", 1000)
        reason = message.get("reason", "") or ""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        try:
            self.conn.send_close(code, reason)
        except InvalidState as exc:
            raise ClientDisconnected() from exc
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # read the client's answer to the close
            self.read_paused = False
            self.transport.resume_reading()
        self._end_within_close_timeout()

    async def _send_frames(self, texts: list[bytes]) -> None:
        await self.writable.wait()
        if self.disconnected or not self._open():
            raise ClientDisconnected()
        try:
            for text in texts:
                self.conn.send_text(text)
        except InvalidState as exc:
            raise ClientDisconnected() from exc
        self.transport.write(b"".join(self.conn.data_to_send()))

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # a close frame (1011) and a close that waits for the buffer
        self._end_within_close_timeout()

    def _open(self) -> bool:
        return (
            self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
        )

    def _end_within_close_timeout(self) -> None:
        if self.close_timer is None and not self.disconnected:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
