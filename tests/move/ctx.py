#!/usr/bin/env python3
"""The context cases' helpers (tests/move/context.test).

ctx.py listen PORT SECS FILE [UNTIL]  answer 200 to every SIP request on 127.0.0.1:PORT (UDP),
                                      one line per request to FILE ("METHOD body-on-one-line"),
                                      until a body holds UNTIL (a regex) or SECS pass (exit 1)
ctx.py get URL                        print the status, then the body (a page)
ctx.py post HTTPPORT TOKENFILE PATH JSON   print "status error" of an admin POST
ctx.py posts HTTPPORT TOKENFILE       the same for each line "PATH JSON" of stdin, in order
"""
import json
import re
import socket
import sys
import time
import urllib.error
import urllib.request


def listen(port, secs, path, until=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(port)))
    s.settimeout(0.2)
    deadline = time.monotonic() + float(secs)
    seen = set()
    with open(path, "a") as out:
        while time.monotonic() < deadline:
            try:
                data, peer = s.recvfrom(65536)
            except socket.timeout:
                continue
            text = data.decode("utf-8", "replace")
            head, _, body = text.partition("\r\n\r\n")
            lines = head.split("\r\n")
            if not lines or lines[0].startswith("SIP/2.0"):
                continue
            method = lines[0].split(" ", 1)[0]
            keep = [l for l in lines[1:] if re.match(r"(?i)(via|from|to|call-id|cseq):", l)]
            to = [i for i, l in enumerate(keep) if re.match(r"(?i)to:", l)]
            for i in to:
                if "tag=" not in keep[i]:
                    keep[i] += ";tag=listener"
            resp = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
            s.sendto(resp.encode(), peer)
            key = [l for l in keep if re.match(r"(?i)(call-id|cseq):", l)]
            if tuple(key) in seen:
                continue  # a retransmission
            seen.add(tuple(key))
            out.write("%s %s\n" % (method, body.replace("\r", " ").replace("\n", " ")))
            out.flush()
            if until and re.search(until, body):
                return 0
    return 1 if until else 0


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            st, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        st, body = e.code, e.read()
    print(st)
    print(body.decode("utf-8", "replace"))
    return 0


def post(port, tokenfile, path, body):
    token = open(tokenfile).read().strip()
    req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), method="POST",
                                 data=body.encode(), headers={
                                     "Authorization": "Bearer " + token,
                                     "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            st, out = r.status, r.read()
    except urllib.error.HTTPError as e:
        st, out = e.code, e.read()
    try:
        o = json.loads(out)
        extra = o.get("error") or o.get("link") or o.get("text") or ""
    except ValueError:
        extra = ""
    print(st, extra)
    return 0


def main(a):
    if a[0] == "listen":
        return listen(a[1], a[2], a[3], a[4] if len(a) > 4 else None)
    if a[0] == "get":
        return get(a[1])
    if a[0] == "post":
        return post(a[1], a[2], a[3], a[4])
    if a[0] == "posts":
        for line in sys.stdin:
            path, _, body = line.rstrip("\n").partition(" ")
            if path:
                post(a[1], a[2], path, body)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
