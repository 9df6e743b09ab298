"""RESP framing and raw connections for tests that talk to respgate or Redis
without a client library."""

import socket


def frame(*args):
    """One command as a RESP array of bulk strings (str, int or bytes arguments)."""
    args = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


class RawConnection:
    """A socket to respgate or Redis with no client library in between; a
    subclass's reply() decides how a reply is read and what it returns."""

    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def reply(self):
        raise NotImplementedError

    def call(self, *args):
        self.sock.sendall(frame(*args))
        return self.reply()

    def close(self):
        self.f.close()
        self.sock.close()
