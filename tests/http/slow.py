#!/usr/bin/env python3
"""Slow HTTP clients for tests/http/http.test; every mode ends by itself within its deadline.

  flood PORT SRC COUNT CLOSED READY STOP
      COUNT connections from SRC that send part of a request line and headers, then nothing.
      Waits (deadline 20 s) until CLOSED of them were closed by the server, writes
      "ready closed=N open=M" (or "timeout closed=N open=M") to READY, then holds the rest
      until the file STOP exists (deadline 60 s) and prints "closed=N open=M" as they stand.
  header PORT SRC     one connection trickling header bytes every 0.2 s; prints the seconds
                      until the server closed it, exit 1 if it did not in 20 s.
  body PORT SRC PATH  full headers (Content-Length 4096) then body bytes every 0.2 s; same.
"""
import os
import resource
import select
import socket
import sys
import time

HEAD = b"GET /m/flood/state HTTP/1.1\r\nHost: qrxfer.test\r\nX-Slow: "


def connect(port, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


def closed_by_peer(s):
    """True if the server closed s (EOF or reset); reads and drops anything else."""
    try:
        data = s.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return not data


def flood(port, src, count, want_closed, ready, stop):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    socks, closed = [], set()
    for _ in range(count):
        try:
            s = connect(port, src)
            s.send(HEAD)
        except OSError:  # refused at once: closed before we could even send
            closed.add(len(socks))
            socks.append(None)
            continue
        socks.append(s)
    poller = select.poll()
    fds = {}
    for i, s in enumerate(socks):
        if s is not None:
            poller.register(s, select.POLLIN)
            fds[s.fileno()] = i

    def settle(until, done):
        while time.monotonic() < until:
            for fd, _ in poller.poll(100):
                i = fds[fd]
                if i not in closed and closed_by_peer(socks[i]):
                    closed.add(i)
                    poller.unregister(fd)
            if done():
                return True
        return False

    ok = settle(time.monotonic() + 20, lambda: len(closed) >= want_closed)
    with open(ready + ".tmp", "w") as f:
        f.write("%s closed=%d open=%d\n" % ("ready" if ok else "timeout", len(closed),
                                            count - len(closed)))
    os.rename(ready + ".tmp", ready)
    settle(time.monotonic() + 60, lambda: os.path.exists(stop))
    print("closed=%d open=%d" % (len(closed), count - len(closed)))
    for s in socks:
        if s is not None:
            s.close()


def trickle(port, src, first, byte):
    s = connect(port, src)
    start = time.monotonic()
    s.send(first)
    while time.monotonic() - start < 20:
        r, _, _ = select.select([s], [], [], 0.2)
        if r and closed_by_peer(s):
            print("%.1f" % (time.monotonic() - start))
            return 0
        try:
            s.send(byte)
        except OSError:
            print("%.1f" % (time.monotonic() - start))
            return 0
    print("open after 20 s")
    return 1


def main(argv):
    mode = argv[1]
    if mode == "flood":
        flood(int(argv[2]), argv[3], int(argv[4]), int(argv[5]), argv[6], argv[7])
        return 0
    if mode == "header":
        return trickle(int(argv[2]), argv[3], b"GET /m/slow/state HTTP/1.1\r\nX-Slow: ", b"a")
    if mode == "body":
        head = ("POST %s HTTP/1.1\r\nHost: qrxfer.test\r\nContent-Type: image/png\r\n"
                "Content-Length: 4096\r\n\r\n" % argv[4]).encode()
        return trickle(int(argv[2]), argv[3], head, b"x")
    print("unknown mode " + mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
