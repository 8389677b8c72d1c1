#!/usr/bin/env python3
"""tests/chromium/cdp.py: watch a page in a running headless Chromium over the DevTools protocol.

  cdp.py PROFILE_DIR EXPR WANT SECS

Chromium must run with --remote-debugging-port=0 --user-data-dir=PROFILE_DIR (it writes its
port to PROFILE_DIR/DevToolsActivePort). Evaluates the JavaScript EXPR in the first page
every 100 ms until its string value contains WANT; prints the last value; exit 1 at the
deadline. Only 127.0.0.1 is contacted. A minimal WebSocket client (RFC 6455), stdlib only.
"""
import base64
import json
import os
import socket
import sys
import time
import urllib.parse
import urllib.request


def ws_connect(url):
    u = urllib.parse.urlparse(url)
    s = socket.create_connection(("127.0.0.1", u.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (u.path, u.port, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise SystemExit("cdp: websocket handshake: connection closed")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit("cdp: websocket handshake refused: %r" % head[:200])
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise SystemExit("cdp: connection closed")
        buf += chunk
    return buf


def ws_send(s, text):
    data = text.encode()
    n = len(data)
    head = bytes([0x81])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def ws_recv(s):
    msg = b""
    while True:
        b0, b1 = recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(recv_exact(s, 2), "big")
        elif n == 127:
            n = int.from_bytes(recv_exact(s, 8), "big")
        payload = recv_exact(s, n)
        op = b0 & 0x0F
        if op == 8:
            raise SystemExit("cdp: websocket closed by Chromium")
        if op in (0, 1, 2):
            msg += payload
            if b0 & 0x80:
                return msg.decode("utf-8", "replace")


def find_page(profile, deadline, url_part=""):
    """The first page (whose URL holds url_part) of the Chromium using profile, by the
    deadline (time.monotonic()), or SystemExit."""
    port = None
    while port is None:
        try:
            port = int(open(os.path.join(profile, "DevToolsActivePort")).readline())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise SystemExit("cdp: no DevToolsActivePort in %s" % profile)
            time.sleep(0.05)
    while True:
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        pages = [t for t in pages if url_part in t.get("url", "")]
        if pages:
            return pages[0]
        if time.monotonic() > deadline:
            raise SystemExit("cdp: no page%s in %s" % (" at " + url_part if url_part else "",
                                                       profile))
        time.sleep(0.05)


def main(a):
    profile, expr, want, secs = a[0], a[1], a[2], float(a[3])
    deadline = time.monotonic() + secs
    page = find_page(profile, deadline)
    s = ws_connect(page["webSocketDebuggerUrl"])
    seq, value = 0, None
    while True:
        seq += 1
        ws_send(s, json.dumps({"id": seq, "method": "Runtime.evaluate",
                               "params": {"expression": expr, "returnByValue": True}}))
        while True:
            reply = json.loads(ws_recv(s))
            if reply.get("id") == seq:
                break
        value = reply.get("result", {}).get("result", {}).get("value")
        if isinstance(value, str) and want in value:
            print(value)
            return 0
        if time.monotonic() > deadline:
            print(value)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
