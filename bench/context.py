#!/usr/bin/env python3
"""make bench-context: what a call's context costs over HTTP (bench/README.md).

One qrxferd (plain build, SQLite store) on loopback. A context of the longest kind (32 notes of
240 bytes, the limit) is put in its store; then, three runs each: N requests of the context page
GET /c/{secret} one after the other, and N note POSTs to a call with no room left (each reads
the context and is refused 409), timed at the client. Prints the median of the three runs'
medians and p99s, in ms. N = BENCH_CONTEXT_N (500).
"""
import hashlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

B = os.environ.get("top_builddir", ".")
N = benchlib.env_int("BENCH_CONTEXT_N", 500)


def conf(d, sip, http):
    open(os.path.join(d, "admin.token"), "w").write("t" * 48 + "\n")
    return """[module]
load = mod_qrxfer.so
[log]
level = warn
[sip]
listen = sip:127.0.0.1:%d
domain = qrxfer.test
upstream = sip:127.0.0.1:%d
[http]
listen = 127.0.0.1:%d
admin_token_file = %s/admin.token
public_url = http://127.0.0.1:%d
rate = 100000
burst = 100000
[store]
url = sqlite://%s/qrxfer.db
[codes]
hmac_key_file = %s/hmac.key
""" % (sip, sip + 1, http, d, http, d, d)


def start(d, sip, http):
    p = benchlib.spawn([os.path.join(B, "qrxferd"), "-c", os.path.join(d, "qrxfer.conf"),
                        "-M", os.path.join(B, ".libs")], os.path.join(d, "qrxferd.log"), d)
    for _ in range(200):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/c/x" % http, timeout=1)
        except urllib.error.HTTPError:
            return p
        except OSError:
            time.sleep(0.05)
    raise SystemExit("qrxferd did not start (see %s/qrxferd.log)" % d)


def timed(req):
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            st = r.status
    except urllib.error.HTTPError as e:
        e.read()
        st = e.code
    return (time.perf_counter() - t) * 1000.0, st


def main():
    d = tempfile.mkdtemp(prefix="qrxfer-bench-context-")
    sip = benchlib.free_port(2)
    http = benchlib.free_port()
    open(os.path.join(d, "qrxfer.conf"), "w").write(conf(d, sip, http))
    p = start(d, sip, http)  # makes the schema
    benchlib.stop(p)
    secret = "Bench0Context0Secret0A"
    call = "0123456789abcdef0123456789abcdef"
    db = sqlite3.connect(os.path.join(d, "qrxfer.db"))
    db.execute("INSERT INTO contexts (call_id, secret_hash, far_identity, far_uri, near_uri, "
               "started_at) VALUES (?, ?, ?, ?, ?, ?)",
               (call, hashlib.sha256(secret.encode()).hexdigest(),
                '"Carol <b>" <sip:+15550100@pbx.test>', "sip:carol@pbx.test",
                "sip:alice@pbx.test", int(time.time() * 1000)))
    for i in range(32):
        db.execute("INSERT INTO context_notes (call_id, seq, at, text) VALUES (?, ?, ?, ?)",
                   (call, i + 1, int(time.time() * 1000), ("<note %d> " % i).ljust(240, "x")))
    db.commit()
    db.close()
    p = start(d, sip, http)
    token = open(os.path.join(d, "admin.token")).read().strip()
    page, post = [], []
    try:
        for run in range(3):
            lat = []
            for _ in range(N):
                ms, st = timed("http://127.0.0.1:%d/c/%s" % (http, secret))
                if st != 200:
                    raise SystemExit("GET /c/{secret}: %d" % st)
                lat.append(ms)
            page.append(lat)
            lat = []
            for _ in range(N):
                req = urllib.request.Request(
                    "http://127.0.0.1:%d/v1/calls/%s/notes" % (http, call), method="POST",
                    data=json.dumps({"text": "one more"}).encode(),
                    headers={"Authorization": "Bearer " + token,
                             "Content-Type": "application/json"})
                ms, st = timed(req)
                if st != 409:
                    raise SystemExit("POST notes: %d, not 409" % st)
                lat.append(ms)
            post.append(lat)
    finally:
        benchlib.stop(p)

    def fig(name, runs):
        med = statistics.median(statistics.median(r) for r in runs)
        p99 = statistics.median(sorted(r)[int(len(r) * 0.99) - 1] for r in runs)
        print("%-44s median %.2f ms, p99 %.2f ms (median of 3 runs of %d)" % (name, med, p99, N))

    fig("GET /c/{secret} (32 notes of 240 bytes)", page)
    fig("POST /v1/calls/{id}/notes (full: 409)", post)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        benchlib.cleanup()
