# A listener marked "proxy-protocol" takes the client's address from the
# PROXY header (v1 text, v2 binary) that a proxy such as Nginx's stream
# module sends first: CLIENT INFO and the log show the application's own
# address. A connection without a valid header is closed, with a log line
# that says why; the plain listener beside it is unaffected.

import socket
import struct
import time

import pytest

from harness.respgate import free_port

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src, sport, dst="127.0.0.1", dport=6380):
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return V2_SIG + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs


def exchange(port, data, timeout=5):
    """Sends DATA, returns all respgate sends until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        s.settimeout(1)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return got, True
                got += chunk
        except socket.timeout:
            return got, False


CLIENT_INFO = b"*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n"


@pytest.fixture
def prg(make_respgate):
    plain, proxied = free_port(), free_port()
    # Protected mode would refuse the documentation addresses the headers
    # name (no client password here): test_security.py tests that.
    rg = make_respgate(extra="log: {level: debug}\nprotected_mode: no\n", start=False)
    text = open(rg.conf_path).read().replace(f"listen: [127.0.0.1:{rg.port}]",
                                             f'listen: [127.0.0.1:{plain}, "127.0.0.1:{proxied} proxy-protocol"]')
    assert "proxy-protocol" in text
    rg.write_config(text)
    rg.port, rg.proxied = plain, proxied
    return rg.start()


def test_v1_and_v2_headers_give_the_clients_address(prg):
    got, _ = exchange(prg.proxied, b"PROXY TCP4 192.0.2.7 127.0.0.1 54321 6380\r\n" + CLIENT_INFO)
    assert b"addr=192.0.2.7:54321 " in got, got
    got, _ = exchange(prg.proxied, b"PROXY TCP6 2001:db8::9 ::1 4000 6380\r\n" + CLIENT_INFO)
    assert b"addr=[2001:db8::9]:4000 " in got or b"addr=2001:db8::9:4000 " in got, got
    got, _ = exchange(prg.proxied, v2_tcp4("198.51.100.3", 40000) + CLIENT_INFO)
    assert b"addr=198.51.100.3:40000 " in got, got
    # LOCAL (the proxy's own health check) keeps the connection's address.
    got, _ = exchange(prg.proxied, V2_SIG + b"\x20\x00\x00\x00" + CLIENT_INFO)
    assert b"addr=127.0.0.1:" in got, got
    # The header may arrive in pieces.
    with socket.create_connection(("127.0.0.1", prg.proxied), timeout=5) as s:
        for piece in (b"PROX", b"Y TCP4 192.0.2.8 127.0.0.1 1", b"2 6380\r", b"\n" + CLIENT_INFO):
            s.sendall(piece)
            time.sleep(0.05)
        got = s.recv(4096)
        assert b"addr=192.0.2.8:12 " in got, got
    # The plain listener takes no header.
    got, _ = exchange(prg.port, CLIENT_INFO)
    assert b"addr=127.0.0.1:" in got, got


@pytest.mark.parametrize("data,why", [
    (b"*1\r\n$4\r\nPING\r\n", "no PROXY protocol header"),
    (b"PROXY TCP4 192.0.2.7 127.0.0.1 99999 6380\r\nPING\r\n", "a malformed PROXY v1 line"),
    (b"PROXY TCP4 " + b"1" * 200, "longer than 107 bytes"),
    (V2_SIG + b"\x21\x11\xff\xff", "longer than respgate accepts"),
    (V2_SIG + b"\x21\x11\x00\x04abcd", "too short for IPv4"),
])
def test_a_missing_or_forged_header_closes_the_connection(prg, data, why):
    got, closed = exchange(prg.proxied, data)
    assert closed and got == b"", got
    deadline = time.monotonic() + 5
    while why not in prg.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert why in prg.log() and "on a listener that expects one (proxy-protocol)" in prg.log()


def test_a_header_cut_off_by_eof_is_refused(prg):
    with socket.create_connection(("127.0.0.1", prg.proxied), timeout=5) as s:
        s.sendall(b"PROXY TCP4 192.0.2.7")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(64) == b""
    deadline = time.monotonic() + 5
    while "a PROXY protocol header cut off" not in prg.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "a PROXY protocol header cut off" in prg.log()
    assert prg.client().ping()
