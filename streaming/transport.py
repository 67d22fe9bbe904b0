"""Room frames written straight to a viewer's socket, past the ASGI send.

A room broadcast reaches thousands of connections in one process. Through
the ASGI ``send``, every delivery goes through Daphne's reply handling,
autobahn's framing and Twisted's deferred write (the bytes leave on a later
turn of the event loop). Here the WebSocket frame of each distinct text is
built once per fan-out, and each connection gets it with one ``send()``
system call when nothing is queued before it.

Contract:

- :func:`writer_for` is given a consumer's ``base_send`` once, when the
  viewer is ready, and returns a :class:`Writer` only for a connection
  served by Daphne over plain TCP, with no permessage-deflate and unmasked
  server frames. Anything else (TLS, a UNIX socket, another server, the
  test communicator) gets None, and the caller keeps using the consumer's
  own ``send``: the frames are the same either way.
- :meth:`Writer.write` never reorders a connection's bytes. Frames sent
  through the ASGI ``send`` (hello, acks, errors, pongs) are handed to
  Twisted before that ``await`` returns (see below), so they are in
  Twisted's buffer or already in the kernel when the hub writes. The writer
  calls ``socket.send`` only when Twisted's buffer for the connection is
  empty; otherwise it appends to that buffer with ``transport.write``, as
  autobahn would. What a partial or refused ``send`` leaves over goes to
  ``transport.write`` too, so every later frame queues behind it.
- A connection that is closing gets no more room frames (the ASGI path
  would refuse them too).

Why an ASGI ``send`` is already written when its ``await`` returns: the
consumer's ``send`` awaits channels' session wrapper, which for WebSocket
messages awaits nothing before calling Daphne's ``Server.handle_reply``;
that coroutine has no ``await`` at all and calls autobahn's
``sendMessage``, which frames the text and calls ``transport.write``
synchronously (its own send queue is used only for ``sync`` or chopped
writes, which Daphne never asks for; the writer checks it anyway). So no
other task can run between a consumer's ``send`` and the bytes reaching
Twisted's buffer.

Private fields read (Twisted 26.10.0, autobahn 26.10.2, daphne 4.2.3 and
channels 4.3.2, pinned in requirements.txt; tests/streaming/test_transport.py
exercises each of them against the real libraries):

- Daphne: the app's ``send`` is ``functools.partial(server.handle_reply,
  protocol)``; channels' ``InstanceSessionWrapper.real_send``.
- autobahn ``WebSocketProtocol``: ``state``, ``send_queue``,
  ``_perMessageCompress``, ``maskServerFrames``, ``maxMessagePayloadSize``.
  Outgoing data frames change no other protocol state; only the
  ``trafficStats`` counters, which nothing reads, are not advanced.
- Twisted ``tcp.Server``: ``socket``, ``dataBuffer``, ``_tempDataBuffer``,
  ``disconnecting``, ``_writeDisconnected``, ``connected``, ``TLS``.
"""

from __future__ import annotations

import functools
import logging
import pprint
import struct
from collections.abc import Callable
from typing import Any

import txaio
from autobahn import util as autobahn_util
from autobahn.twisted import websocket as twisted_websocket
from autobahn.websocket import protocol as autobahn_protocol
from channels.sessions import InstanceSessionWrapper
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

logger = logging.getLogger(__name__)


# autobahn builds the arguments of its debug messages whether or not debug
# logging is on: its whole configuration with ``pprint.pformat`` for every
# new connection, highlighted type names (``hltype``, ``hlval``) for every
# connection and every chunk of data received. In a join storm's profile
# that was a sixth of the server's CPU per join. The names its modules use
# are replaced by ones that format only when txaio logs debug messages.
# (autobahn 26.10.2, pinned; tests/streaming/test_joins.py.)

_NOT_FORMATTED = "(not formatted: debug logging is off)"


def _debugging() -> bool:
    # txaio picks its asyncio or Twisted half at run time: no static type.
    level: str = getattr(txaio, "get_global_log_level")()  # noqa: B009
    return level in ("debug", "trace")


def _when_logged(format_: Callable[[Any], str]) -> Callable[[Any], str]:
    @functools.wraps(format_)
    def formatted(value: Any) -> str:
        return format_(value) if _debugging() else _NOT_FORMATTED

    return formatted


def install_lazy_debug_format() -> None:
    """Make autobahn skip formatting debug messages nobody logs."""
    setattr(autobahn_protocol, "pformat", _when_logged(pprint.pformat))  # noqa: B010
    for module in (autobahn_protocol, twisted_websocket):
        setattr(module, "hltype", _when_logged(autobahn_util.hltype))  # noqa: B010
    setattr(twisted_websocket, "hlval", _when_logged(autobahn_util.hlval))  # noqa: B010


#: FIN bit and the text opcode: a whole, unfragmented text message.
_FIN_TEXT = 0x81
_OPEN = WebSocketProtocol.STATE_OPEN
_noted: set[str] = set()


def text_frame(text: str) -> bytes:
    """The unmasked server-to-client WebSocket frame of ``text`` (RFC 6455 §5.2)."""
    payload = text.encode("utf-8")
    length = len(payload)
    if length <= 125:
        header = bytes((_FIN_TEXT, length))
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", _FIN_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, length)
    return header + payload


class PreparedFrames:
    """The frames of one fan-out: each distinct text (by identity) framed once."""

    __slots__ = ("_frames",)

    def __init__(self) -> None:
        # The text is kept with its frame so that its id cannot be reused.
        self._frames: dict[int, tuple[str, bytes]] = {}

    def __call__(self, text: str) -> bytes:
        entry = self._frames.get(id(text))
        if entry is None or entry[0] is not text:
            entry = self._frames[id(text)] = (text, text_frame(text))
        return entry[1]


class Writer:
    """Writes prepared frames to one Daphne WebSocket connection over TCP."""

    __slots__ = ("_protocol", "_send", "_transport")

    def __init__(self, protocol: WebSocketProtocol, transport: tcp.Server) -> None:
        self._protocol = protocol
        self._transport = transport
        self._send: Callable[[bytes], int] = transport.socket.send

    def write(self, frame: bytes) -> bool:
        """Send ``frame`` after everything already sent on the connection.

        Returns False when the frame must go through the ASGI ``send``
        instead: autobahn has queued writes of its own, compresses this
        connection, or the frame is over its size limit (which the ASGI
        path reports)."""
        protocol, transport = self._protocol, self._transport
        if (
            protocol.state != _OPEN
            or transport.disconnecting
            or transport._writeDisconnected
            or not transport.connected
        ):
            return True  # closing: nothing more is sent on it
        limit = protocol.maxMessagePayloadSize
        if (
            protocol.send_queue
            or protocol._perMessageCompress is not None
            or (limit and len(frame) > limit)
        ):
            return False
        if transport.dataBuffer or transport._tempDataBuffer:
            transport.write(frame)
            return True
        try:
            sent = self._send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Twisted meets the same error on its next write and closes
            # the connection as it would have anyway.
            transport.write(frame)
            return True
        if sent < len(frame):
            transport.write(frame[sent:])
        return True


def writer_for(send: Callable[..., Any]) -> Writer | None:
    """A :class:`Writer` for the connection behind a consumer's ``base_send``,
    or None when its frames must keep going through ``send``."""
    protocol = _daphne_protocol(send)
    if protocol is None:
        return None
    transport = protocol.transport
    if type(transport) is not tcp.Server or transport.TLS:
        _note_once("connections that are not plain TCP (TLS, UNIX sockets) use the ASGI send")
        return None
    if protocol._perMessageCompress is not None or protocol.maskServerFrames:
        _note_once("compressed or masked connections use the ASGI send")
        return None
    _note_once("room frames are written straight to each viewer's socket")
    return Writer(protocol, transport)


def close_with_reason(send: Callable[..., Any], code: int, reason: str) -> bool:
    """Close the accepted connection behind ``send`` with ``code`` and
    ``reason``; False when it is not a Daphne connection (the caller then
    closes through the ASGI ``send``, which carries the reason).

    Daphne passes an application's close code on but drops its reason, and
    the reason is part of the protocol (4503's ``retry=<seconds>``). So the
    close frame is sent through autobahn, as Daphne itself would with the
    reason added; Daphne hears of the close as of any other."""
    protocol = _daphne_protocol(send)
    if protocol is None or protocol.state == WebSocketProtocol.STATE_CONNECTING:
        return False  # not accepted yet: Daphne refuses the handshake itself
    if protocol.state == _OPEN:
        protocol.sendClose(code=code, reason=reason)
    return True


def _daphne_protocol(send: Callable[..., Any]) -> WebSocketProtocol | None:
    # Middlewares that wrap ``send`` must not delay a WebSocket message:
    # only channels' session wrapper is known to pass them straight on.
    while isinstance(owner := getattr(send, "__self__", None), InstanceSessionWrapper):
        if getattr(send, "__func__", None) is not InstanceSessionWrapper.send or any(
            kind.startswith("websocket.") for kind in owner.save_message_types
        ):
            return None
        send = owner.real_send
    if not isinstance(send, functools.partial) or len(send.args) != 1 or send.keywords:
        return None
    handler = send.func
    if getattr(handler, "__func__", None) is not Server.handle_reply or not isinstance(
        getattr(handler, "__self__", None), Server
    ):
        return None
    protocol = send.args[0]
    return protocol if isinstance(protocol, WebSocketProtocol) else None


def _note_once(message: str) -> None:
    if message not in _noted:
        _noted.add(message)
        logger.info(message)
