#!/usr/bin/env python3
"""The context cases' helpers (tests/move/context.test).

ctx.py listen PORT SECS FILE [UNTIL]  answer 200 to every SIP request on 127.0.0.1:PORT (UDP),
                                      one line per request to FILE ("METHOD body-on-one-line"),
                                      until a body holds UNTIL (a regex) or SECS pass (exit 1)
ctx.py get URL                        print the status, then the body (a page)
ctx.py post HTTPPORT TOKENFILE PATH JSON   print "status error" of an admin POST
ctx.py posts HTTPPORT TOKENFILE       the same for each line "PATH JSON" of stdin, in order
ctx.py lock DB GO SECS                hold SQLite's write lock on DB (prints "locked") until the
                                      file GO exists or SECS pass
ctx.py flood SIPPORT N USER GO FEW    send N INVITEs to sip:USER@qrxfer.test from one socket;
                                      once all but FEW have a final answer (or 10 s passed),
                                      print "before GO: STATUS/RETRY-AFTER=count ...", make
                                      the file GO, then print "after: ..." once all N have one
                                      (or 20 s passed; "none" counts those without)
"""
import os
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


def lock(db, go, secs):
    import sqlite3
    c = sqlite3.connect(db, isolation_level=None, timeout=10)
    c.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    deadline = time.monotonic() + float(secs)
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    c.execute("ROLLBACK")
    return 0


def flood(port, n, user, go, few):
    n, few = int(n), int(few)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    me = s.getsockname()[1]
    s.settimeout(0.1)
    finals = {}
    for i in range(n):
        msg = ("INVITE sip:%s@qrxfer.test SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-flood-%d\r\n"
               "From: <sip:flood@127.0.0.1:%d>;tag=f%d\r\nTo: <sip:%s@qrxfer.test>\r\n"
               "Call-ID: flood-%d@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
               "Contact: <sip:flood@127.0.0.1:%d>\r\nMax-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n") % (user, me, i, me, i, user, i, me)
        s.sendto(msg.encode(), ("127.0.0.1", int(port)))

    def collect(until, secs):
        deadline = time.monotonic() + secs
        while not until() and time.monotonic() < deadline:
            try:
                data, peer = s.recvfrom(65536)
            except socket.timeout:
                continue
            head = data.decode("utf-8", "replace").partition("\r\n\r\n")[0].split("\r\n")
            if not head[0].startswith("SIP/2.0 "):
                continue
            st = int(head[0].split()[1])
            hdr = {}
            for l in head[1:]:
                k, _, v = l.partition(":")
                hdr.setdefault(k.strip().lower(), v.strip())
            cid = hdr.get("call-id", "")
            if st < 200 or cid in finals:
                continue
            finals[cid] = "%d/%s" % (st, hdr.get("retry-after", "-"))
            i = cid.split("-")[1].split("@")[0]
            ack = ("ACK sip:%s@qrxfer.test SIP/2.0\r\n"
                   "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-flood-%s\r\n"
                   "From: <sip:flood@127.0.0.1:%d>;tag=f%s\r\nTo: %s\r\nCall-ID: %s\r\n"
                   "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n") % (
                       user, me, i, me, i, hdr.get("to", ""), cid)
            s.sendto(ack.encode(), peer)

    def counts():
        c = {}
        for v in finals.values():
            c[v] = c.get(v, 0) + 1
        if n - len(finals):
            c["none"] = n - len(finals)
        return " ".join("%s=%d" % kv for kv in sorted(c.items()))

    collect(lambda: len(finals) >= n - few, 10)
    print("before GO:", counts(), flush=True)
    open(go, "w").close()
    collect(lambda: len(finals) >= n, 20)
    print("after:", counts(), flush=True)
    return 0


def main(a):
    if a[0] == "lock":
        return lock(a[1], a[2], a[3])
    if a[0] == "flood":
        return flood(a[1], a[2], a[3], a[4], a[5])
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
