#!/usr/bin/env python3
"""crlf-ping.py PORT: RFC 5626 3.5.1 keep-alives to 127.0.0.1:PORT.

Sends a double CRLF over UDP (nothing is expected back) and over a new TCP connection,
where the answer must be exactly one CRLF within 2 s. Prints nothing when that holds,
else one line saying what came back (for run.sh's verdict); exits 0 either way.
"""
import socket
import sys
import time


def main():
    port = int(sys.argv[1])
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"\r\n\r\n", ("127.0.0.1", port))
    u.close()
    got = b""
    try:
        t = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError as e:
        print(f" TCP connect to {port}: {e};")
        return 0
    t.sendall(b"\r\n\r\n")
    deadline = time.monotonic() + 2
    while len(got) < 2 and time.monotonic() < deadline:
        t.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = t.recv(64)
        except socket.timeout:
            break
        except OSError as e:
            print(f" TCP recv: {e};")
            break
        if not chunk:
            break
        got += chunk
    t.close()
    if got != b"\r\n":
        print(f" TCP double-CRLF ping got {got!r} in 2 s, not the pong b'\\r\\n' (RFC 5626 3.5.1);")
    return 0


if __name__ == "__main__":
    sys.exit(main())
