#!/usr/bin/env python3
"""A local SMS gateway for tests, speaking the shape of Twilio's Messages resource.

POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded To, From, Body, with
HTTP Basic auth, answered 201 with JSON {"sid": "SM...", "status": "queued", ...}.
Each accepted message is appended to --log as one JSON line (To, From, Body, sid, the
Authorization header), so a test can read back what qrxfer sent.

--fail N answers the first N requests 503 (to exercise retries). --reply-to URL posts a reply
back as Twilio would to an inbound webhook: for each accepted message it POSTs
From=<To>&To=<From>&Body=<--reply-text> to URL, signed with X-Twilio-Signature under the
auth token from --auth (ACCOUNT:TOKEN), after --reply-delay seconds.
Binds 127.0.0.1 only; --port 0 picks a free port, written to --port-file.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def twilio_signature(token, url, params):
    """Twilio's algorithm: base64(HMAC-SHA1(token, url + sorted name+value pairs))."""
    data = url + "".join(k + v for k, v in sorted(params))
    mac = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--account", default="AC0000")
    ap.add_argument("--auth", help="ACCOUNT:TOKEN expected in Basic auth")
    ap.add_argument("--fail", type=int, default=0)
    ap.add_argument("--reply-to")
    ap.add_argument("--reply-text", default="yes")
    ap.add_argument("--reply-delay", type=float, default=0.2)
    ap.add_argument("--lifetime", type=float, default=300, help="exit after this many seconds")
    a = ap.parse_args()
    lock = threading.Lock()
    state = {"requests": 0}
    want_auth = None
    if a.auth:
        want_auth = "Basic " + base64.b64encode(a.auth.encode()).decode()

    def reply_later(to, frm):
        time.sleep(a.reply_delay)
        params = [("From", to), ("To", frm), ("Body", a.reply_text),
                  ("MessageSid", "SM" + secrets.token_hex(16)), ("AccountSid", a.account)]
        body = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(a.reply_to, data=body, method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        if a.auth:
            req.add_header("X-Twilio-Signature",
                           twilio_signature(a.auth.split(":", 1)[1], a.reply_to, params))
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except Exception as e:  # the test sees the missing reply; say why here
            print("receiver: reply to %s: %s" % (a.reply_to, e), file=sys.stderr)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def answer(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n).decode("utf-8", "replace")
            with lock:
                state["requests"] += 1
                count = state["requests"]
            want_path = "/2010-04-01/Accounts/%s/Messages.json" % a.account
            if self.path.split("?")[0] != want_path:
                return self.answer(404, {"code": 20404, "message": "not found", "status": 404})
            if want_auth and self.headers.get("Authorization") != want_auth:
                return self.answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            if count <= a.fail:
                return self.answer(503, {"code": 20500, "message": "scripted failure",
                                         "status": 503})
            form = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
            if not form.get("To") or not form.get("Body") or not form.get("From"):
                return self.answer(400, {"code": 21604, "message": "To, From and Body are required",
                                         "status": 400})
            sid = "SM" + secrets.token_hex(16)
            rec = {"To": form["To"], "From": form["From"], "Body": form["Body"], "sid": sid,
                   "Authorization": self.headers.get("Authorization")}
            with lock:
                with open(a.log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            self.answer(201, {"sid": sid, "account_sid": a.account, "to": form["To"],
                              "from": form["From"], "body": form["Body"], "status": "queued"})
            if a.reply_to:
                threading.Thread(target=reply_later, args=(form["To"], form["From"]),
                                 daemon=True).start()

    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, a.port_file)
    t = threading.Timer(a.lifetime, srv.shutdown)
    t.daemon = True
    t.start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
