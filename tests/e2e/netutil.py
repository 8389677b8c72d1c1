#!/usr/bin/env python3
"""Loopback helpers for the end-to-end test and the benchmark.

  netutil.py ports N [SPAN]     print N free base ports; base..base+SPAN-1 free on UDP and TCP
  netutil.py options PORT [S]   send SIP OPTIONS to 127.0.0.1:PORT over UDP until any
                                response arrives (at most S seconds); print its status line
"""
import random
import socket
import sys
import time


def free(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def ports(n, span):
    got = []
    tries = 0
    while len(got) < n:
        tries += 1
        if tries > 5000:
            sys.exit("netutil: no free ports found")
        base = random.randrange(20000, 60000 - span, 2)
        rng = range(base, base + span)
        if any(abs(base - g) < 2 * max(span, 2) for g in got):
            continue
        if all(free(p) for p in rng):
            got.append(base)
    print(" ".join(str(p) for p in got))


def ngping(port, seconds):
    """rtpengine's ng ping answered with pong within seconds."""
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.3)
        try:
            s.sendto(b"p1 d7:command4:pinge", ("127.0.0.1", int(port)))
            if b"pong" in s.recv(1000):
                return
        except OSError:
            time.sleep(0.2)
        finally:
            s.close()
    sys.exit(1)


def options(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        msg = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-probe{n}-{me};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1:{me}>;tag=p{me}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: probe-{me}-{n}@127.0.0.1\r\n"
            f"CSeq: {n} OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), ("127.0.0.1", port))
        s.settimeout(0.3)
        try:
            data, _ = s.recvfrom(65536)
            print(data.split(b"\r\n", 1)[0].decode("utf-8", "replace"))
            return 0
        except (socket.timeout, ConnectionRefusedError):
            time.sleep(0.1)
    print(f"no answer to OPTIONS on 127.0.0.1:{port} within {seconds}s")
    return 1


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "ports":
        ports(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
        return 0
    if len(sys.argv) >= 3 and sys.argv[1] == "ngping":
        return ngping(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 10.0)
    if len(sys.argv) >= 3 and sys.argv[1] == "options":
        return options(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 10.0)
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
