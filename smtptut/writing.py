"""Writing to a TCP transport at once when nothing is queued, saving a reactor turn."""

from __future__ import annotations

from twisted.internet import tcp
from twisted.internet.interfaces import ITransport


def writeNow(transport: ITransport, data: bytes) -> None:
    """
    Write C{data} to C{transport}, sending it at once if nothing is queued.

    Twisted's TCP transport only queues in C{write}: the send comes on the
    next reactor turn (an epoll_ctl to watch for writability, a poll, the
    send, an epoll_ctl to stop).  A reply is small and the socket almost
    always has room for it, so sending it here saves that turn for every
    reply: the larger part of the server's work for a client that waits for
    each reply.  Anything not sent (or a TLS connection, or any other
    transport) goes the usual way.
    """
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        # The queue is Twisted's (abstract.FileDescriptor): write only when
        # it is empty, so that nothing is sent out of order.
        and not transport.dataBuffer
        and not transport._tempDataLen
        and not transport._writeDisconnected
    ):
        sent = transport.writeSomeData(data)
        # Otherwise (an exception: the connection is lost) write() finds out.
        if isinstance(sent, int):
            data = data[sent:]
            if not data:
                return
    transport.write(data)
