#!/usr/bin/env python3
"""The media anchor's other promises, on the processes tests/e2e/move.test started with
E2E_ANCHOR=1 (real rtpengine, baresip A, B and C), each on a new call from A to C:

  rollback  a SIPp B that answers and sends no media: within [media] verify_timeout the move
            fails "no media from the new device", SIPp B gets a BYE, A was held and is taken
            back (A hears C's tone again, C hears A's), C never gets a re-INVITE;
  undo      B takes the call and its media is verified; A then holds and resumes (a re-INVITE
            sendrecv) within [move] undo_secs: A has the call back, B gets a BYE;
  redial    B takes the call and its media is verified; A then dials the same code again
            within [move] undo_secs: A has the call back on its new dialog, B and A's held
            dialog get a BYE, C keeps its dialog and hears A;
  undorace  A resumes just before [move] undo_secs run out while rtpengine is stopped, so that
            the window's end comes while the undo is under way: one winner (the undo), A keeps
            the call and no BYE, B gets one BYE;
  heldend   C's answer is held for rtpengine (stopped) when A gives up: C still gets its ACK
            and a BYE at once (it does not wait for its 200's retransmissions to time out);
  leak      the call ends while its first offer is with rtpengine (stopped): once rtpengine
            runs again it holds no session of it (qrxferd deletes it);
  answerfail rtpengine took A's offer but never answers for C's answer: A gets C's own SDP,
            and C, which had rtpengine's, is re-INVITEd with A's own: they hear each other
            with rtpengine still stopped (anchored both ways or not at all);
  lateoffer a SIPp A calls C (anchored), then re-INVITEs without SDP: C's offer in the 200
            comes through rtpengine, A's answer in the ACK cannot: the call goes on unanchored
            (log line) and A is re-INVITEd with C's own SDP (C's port, not rtpengine's);
  bigsdp    an INVITE over TCP whose SDP is too big for one ng datagram: the anchor cannot
            send it (answered on the loop's next turn, not inside the hook), the call goes on
            unanchored with a log line, a final answer comes back, qrxferd still answers;
  badsdp    a stranger's INVITE whose SDP rtpengine refuses: it goes on as it came (C answers
            it: C's own 500 "Call Error" comes back), the log says the call is unanchored and
            why, qrxferd still answers;
  killed    rtpengine is SIGKILLed mid-call: qrxferd logs it, re-INVITEs both sides with each
            other's media, and A and C hear each other again, straight from each other's ports.
Exit 0 when all hold, 1 otherwise.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bctl import Ctrl, CtrlError  # noqa: E402
from call import log_size  # noqa: E402
import move as mv  # noqa: E402


class Fail(Exception):
    pass


def tail_of(path, off):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read().decode("utf-8", "replace")


def heard(rec, after, seconds=1.5):
    """The strongest tone in the newest recording made since after (its last seconds)."""
    deadline = time.monotonic() + 3
    f = None
    while f is None and time.monotonic() < deadline:
        f = mv.newest(os.path.join(rec, "*-dec.wav"), after - 1)
        if f is None:
            time.sleep(0.2)
    if f is None:
        return None, 0.0
    try:
        _, rms, _, best, _ = mv.tone_of(f, seconds)
    except Exception as e:  # a recording cut short (wave.Error, move.Fail): silence
        print(f"  {f}: {e}", flush=True)
        return None, 0.0
    return best, rms


class Run:
    def __init__(self, args):
        self.args = args
        self.token = open(args.token_file).read().strip()
        self.a = Ctrl("A", args.a_ctrl)
        self.b = Ctrl("B", args.b_ctrl)
        self.c = Ctrl("C", args.c_ctrl)
        self.ctrls = (self.a, self.b, self.c)
        self.failures = []

    def since(self):
        return {x: len(x.events) for x in self.ctrls}

    def api(self, method, path):
        return mv.api(self.args.http, self.token, method, path, b"" if method == "POST" else None)

    def call(self):
        """A calls C; the new call's id once RTP flows both ways."""
        st, body = self.api("GET", "/v1/calls")
        before = {x["id"] for x in body.get("calls", [])} if st == 200 else set()
        since = self.since()
        t = time.time()
        r = self.a.command("dial", self.args.dial)
        if not r.get("ok"):
            raise Fail(f"A: dial refused: {r.get('data')}")
        want = [(self.a, "CALL_ESTABLISHED"), (self.c, "CALL_ESTABLISHED"),
                (self.a, "CALL_RTPESTAB"), (self.c, "CALL_RTPESTAB")]
        if not mv.wait_events(self.ctrls, want, since, 10):
            raise Fail("A -> C: not established with RTP both ways within 10 s")
        mv.pump(self.ctrls, 1.0)
        st, body = self.api("GET", "/v1/calls")
        new = [x["id"] for x in body.get("calls", []) if x["id"] not in before]
        if len(new) != 1:
            raise Fail(f"GET /v1/calls: new calls {new}, expected one")
        return new[0], t

    def move(self, call_id):
        deadline = time.monotonic() + 5
        while True:
            st, body = self.api("POST", f"/v1/calls/{call_id}/moves")
            if st != 429 or time.monotonic() > deadline:
                break
            mv.pump(self.ctrls, 0.1)
        if st != 201:
            raise Fail(f"POST /v1/calls/{call_id}/moves: {st} {body}")
        return body["id"], body["qr_uri"]

    def move_state(self, move_id):
        st, m = self.api("GET", f"/v1/moves/{move_id}")
        if st != 200 or not isinstance(m, dict):
            return None, None, []
        return m.get("state"), m.get("reason"), m.get("events", [])

    def check_talk(self, what, t_call):
        """A hears C and C hears A at the end of the call started at t_call: they talk 2.5 s
        more, A hangs up, and the closed recordings are read."""
        mv.pump(self.ctrls, 2.5)
        self.hangup()
        for name, rec, want, src in (("A", self.args.a_rec, self.args.c_tone, "C"),
                                     ("C", self.args.c_rec, self.args.a_tone, "A")):
            best, rms = heard(rec, t_call)
            print(f"{what}: {name} hears {best} Hz (RMS {rms:.3f}) at the end", flush=True)
            if rms < 0.01:
                self.failures.append(f"{what}: {name} hears silence at the end")
            elif best != want:
                self.failures.append(f"{what}: {name} hears {best} Hz, expected {src}'s {want}")

    def hangup(self):
        since = self.since()
        self.a.command("hangup")
        if not mv.wait_events(self.ctrls, [(self.a, "CALL_CLOSED"), (self.c, "CALL_CLOSED")],
                              since, 10):
            self.failures.append("A hung up: no CALL_CLOSED on both A and C")
        mv.pump(self.ctrls, 0.5)

    def rollback(self):
        args = self.args
        call_id, t_call = self.call()
        move_id, uri = self.move(call_id)
        token = uri.split(":", 1)[1].split("@", 1)[0]
        c_off = log_size(args.c_log)
        since = self.since()
        print(f"rollback: silent SIPp B dials {uri}", flush=True)
        t0 = time.monotonic()
        p = subprocess.Popen([args.sipp, "-sf", args.silent_xml, "-s", token,
                              f"127.0.0.1:{args.qport}", "-i", "127.0.0.1", "-p",
                              str(args.sipp_port), "-mp", str(args.sipp_media), "-m", "1",
                              "-timeout", "25", "-timeout_error", "-nostdin",
                              "-trace_err", "-error_file", os.path.join(args.dir, "sipp.err")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        rc = None
        while rc is None and time.monotonic() - t0 < 25:
            mv.pump(self.ctrls, 0.2)
            rc = p.poll()
        if rc is None:
            p.kill()
            p.wait()
        took = time.monotonic() - t0
        print(f"rollback: SIPp B ended ({rc}) after {took:.1f} s", flush=True)
        if rc != 0:
            self.failures.append(f"rollback: SIPp B exited {rc} (no BYE after answering?)")
        state, reason, events = self.move_state(move_id)
        steps = [e.get("step") for e in events]
        texts = " | ".join(e.get("text", "") for e in events if e.get("step") == "unverified")
        print(f"rollback: move {state} ({reason}); steps {' '.join(steps)}; {texts}", flush=True)
        if state != "failed" or reason != "no media from the new device":
            self.failures.append(f"rollback: move {state} ({reason}), expected failed with "
                                 "'no media from the new device'")
        for step in ("hold", "unverified"):
            if step not in steps:
                self.failures.append(f"rollback: no '{step}' event")
        if self.a.seen("CALL_CLOSED", since[self.a]) or self.c.seen("CALL_CLOSED", since[self.c]):
            self.failures.append("rollback: A or C lost the call")
        if "got re-INVITE" in tail_of(args.c_log, c_off):
            self.failures.append("rollback: C got a re-INVITE")
        self.check_talk("rollback", t_call)

    def undo(self):
        args = self.args
        call_id, t_call = self.call()
        move_id, uri = self.move(call_id)
        since = self.since()
        print(f"undo: B dials {uri}", flush=True)
        self.b.command("dial", uri)
        if not mv.wait_events(self.ctrls, [(self.b, "CALL_ESTABLISHED")], since, 10):
            raise Fail("undo: B not established")
        deadline = time.monotonic() + 8
        state = None
        while time.monotonic() < deadline:
            state, reason, events = self.move_state(move_id)
            if state != "moving":
                break
            mv.pump(self.ctrls, 0.1)
        if state != "done":
            raise Fail(f"undo: the move is {state}, expected done (verified) before the undo")
        print("undo: the move is done; A holds and resumes", flush=True)
        self.a.command("hold")
        mv.pump(self.ctrls, 0.5)
        self.a.command("resume")
        if not mv.wait_events(self.ctrls, [(self.b, "CALL_CLOSED")], since, args.undo_secs + 3):
            self.failures.append("undo: B got no BYE after A resumed")
        state, reason, events = self.move_state(move_id)
        steps = [e.get("step") for e in events]
        print(f"undo: move {state} ({reason}); steps {' '.join(steps)}", flush=True)
        if "undone" not in steps or not (reason or "").startswith("undone"):
            self.failures.append(f"undo: move {state} ({reason}), no 'undone' event")
        if self.a.seen("CALL_CLOSED", since[self.a]) or self.c.seen("CALL_CLOSED", since[self.c]):
            self.failures.append("undo: A or C lost the call")
        self.check_talk("undo", t_call)

    def ng(self, command, **kw):
        """One ng request to rtpengine (bencoded dicts of strings and ints); the answer."""
        def enc(v):
            if isinstance(v, int):
                return f"i{v}e".encode()
            if isinstance(v, str):
                v = v.encode()
            if isinstance(v, bytes):
                return str(len(v)).encode() + b":" + v
            if isinstance(v, dict):
                return b"d" + b"".join(enc(k) + enc(v[k]) for k in sorted(v)) + b"e"
            return b"l" + b"".join(enc(x) for x in v) + b"e"
        kw["command"] = command
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        try:
            # A new cookie each time: rtpengine answers a cookie it saw from its cache.
            self.ng_seq = getattr(self, "ng_seq", 0) + 1
            cookie = b"anchorpy%d.%d.%d " % (os.getpid(), time.monotonic_ns(), self.ng_seq)
            s.sendto(cookie + enc(kw), ("127.0.0.1", self.args.ng_port))
            return s.recv(65535).split(b" ", 1)[1]
        finally:
            s.close()

    def rtpe_calls(self):
        """The Call-IDs rtpengine holds (ng list)."""
        ans = self.ng("list", limit=1000)
        return set(re.findall(rb"32:([0-9a-f]{32})", ans))

    def rtpe_stop(self):
        os.kill(self.args.rtpengine_pid, signal.SIGSTOP)

    def rtpe_cont(self):
        os.kill(self.args.rtpengine_pid, signal.SIGCONT)

    def rtpe_up(self, q_off):
        """After a stop long enough for qrxferd to call rtpengine down: until it is up again."""
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            text = tail_of(self.args.qrxferd_log, q_off)
            if "does not answer" not in text or "answers again" in text:
                return
            mv.pump(self.ctrls, 0.2)

    def redial(self):
        args = self.args
        call_id, t_call = self.call()
        move_id, uri = self.move(call_id)
        since = self.since()
        print(f"redial: B dials {uri}", flush=True)
        self.b.command("dial", uri)
        if not mv.wait_events(self.ctrls, [(self.b, "CALL_ESTABLISHED")], since, 10):
            raise Fail("redial: B not established")
        deadline = time.monotonic() + 8
        state = None
        while time.monotonic() < deadline:
            state, reason, events = self.move_state(move_id)
            if state != "moving":
                break
            mv.pump(self.ctrls, 0.1)
        if state != "done":
            raise Fail(f"redial: the move is {state}, expected done (verified) first")
        # A has no outbound proxy: the same code, at qrxferd's address.
        again = uri.split("@", 1)[0] + f"@127.0.0.1:{args.qport}"
        print(f"redial: the move is done; A dials {again} again", flush=True)
        since = self.since()
        t_back = time.time()
        self.a.command("dial", again)
        want = [(self.b, "CALL_CLOSED"), (self.a, "CALL_ESTABLISHED"), (self.a, "CALL_CLOSED")]
        if not mv.wait_events(self.ctrls, want, since, args.undo_secs + 3):
            self.failures.append("redial: not (B closed, A's new call up, A's held call "
                                 "closed) after A dialled the code again")
        state, reason, events = self.move_state(move_id)
        steps = [e.get("step") for e in events]
        print(f"redial: move {state} ({reason}); steps {' '.join(steps)}", flush=True)
        if "undone" not in steps or "dialled the code again" not in (reason or ""):
            self.failures.append(f"redial: move {state} ({reason}), not undone by the code")
        if self.c.seen("CALL_CLOSED", since[self.c]):
            self.failures.append("redial: C lost the call")
        self.check_talk("redial", t_back)

    def undorace(self):
        args = self.args
        call_id, t_call = self.call()
        move_id, uri = self.move(call_id)
        since = self.since()
        print(f"undorace: B dials {uri}", flush=True)
        self.b.command("dial", uri)
        if not mv.wait_events(self.ctrls, [(self.b, "CALL_ESTABLISHED")], since, 10):
            raise Fail("undorace: B not established")
        deadline = time.monotonic() + 8
        state = None
        while time.monotonic() < deadline:
            state, reason, events = self.move_state(move_id)
            if state != "moving":
                break
            time.sleep(0.05)
        t_done = time.monotonic()
        if state != "done":
            raise Fail(f"undorace: the move is {state}, expected done before the undo")
        self.a.command("hold")
        mv.pump(self.ctrls, t_done + args.undo_secs - 0.6 - time.monotonic())
        # The undo window ends while rtpengine holds the undo's re-point (0.9 s: less than
        # qrxferd's 1.2 s of ng retries, so the re-point is answered once rtpengine runs).
        print("undorace: rtpengine stopped; A resumes 0.6 s before the undo window ends",
              flush=True)
        self.rtpe_stop()
        try:
            self.a.command("resume")
            mv.pump(self.ctrls, 0.9)
        finally:
            self.rtpe_cont()
        mv.wait_events(self.ctrls, [(self.b, "CALL_CLOSED")], since, 4)
        mv.pump(self.ctrls, 1.0)
        state, reason, events = self.move_state(move_id)
        steps = [e.get("step") for e in events]
        print(f"undorace: move {state} ({reason}); steps {' '.join(steps)}", flush=True)
        if not self.b.seen("CALL_CLOSED", since[self.b]):
            self.failures.append("undorace: B got no BYE")
        if "undone" not in steps:
            self.failures.append(f"undorace: move {state} ({reason}), no 'undone' event")
        if self.a.seen("CALL_CLOSED", since[self.a]) or self.c.seen("CALL_CLOSED", since[self.c]):
            self.failures.append("undorace: A or C lost the call (the window's end won "
                                 "over A's resume)")
            for x in self.ctrls:
                x.command("hangup")
            mv.pump(self.ctrls, 1.0)
            return
        self.check_talk("undorace", t_call)

    def c_manual(self, on):
        r = self.c.command("answermode", "manual" if on else "auto")
        if not r.get("ok"):
            raise Fail(f"C: answermode refused: {r.get('data')}")

    def heldend(self):
        since = self.since()
        self.c_manual(True)
        try:
            r = self.a.command("dial", self.args.dial)
            if not r.get("ok"):
                raise Fail(f"A: dial refused: {r.get('data')}")
            if not mv.wait_events(self.ctrls, [(self.c, "CALL_INCOMING")], since, 10):
                raise Fail("heldend: C got no call")
            print("heldend: rtpengine stopped; C answers, A gives up 0.3 s later", flush=True)
            self.rtpe_stop()
            try:
                t0 = time.monotonic()
                self.c.command("accept")
                mv.pump(self.ctrls, 0.3)
                self.a.command("hangup")
                mv.wait_events(self.ctrls, [(self.c, "CALL_CLOSED")], since, 0.6)
                took = time.monotonic() - t0
            finally:
                self.rtpe_cont()
            closed = self.c.seen("CALL_CLOSED", since[self.c])
            print(f"heldend: C's call closed: {bool(closed)} ({took:.1f} s after its answer)",
                  flush=True)
            if not closed:
                self.failures.append("heldend: C got no ACK and BYE for its held answer "
                                     "once A gave up")
        finally:
            mv.wait_events(self.ctrls, [(self.a, "CALL_CLOSED"), (self.c, "CALL_CLOSED")],
                           since, 40)
            self.c_manual(False)
            mv.pump(self.ctrls, 1.0)

    def leak(self):
        before = self.rtpe_calls()
        since = self.since()
        print(f"leak: rtpengine holds {len(before)} calls; stopped; A dials C and gives up",
              flush=True)
        self.rtpe_stop()
        try:
            r = self.a.command("dial", self.args.dial)
            if not r.get("ok"):
                raise Fail(f"A: dial refused: {r.get('data')}")
            mv.pump(self.ctrls, 0.4)
            self.a.command("hangup")
            mv.pump(self.ctrls, 0.3)
        finally:
            self.rtpe_cont()
        mv.wait_events(self.ctrls, [(self.a, "CALL_CLOSED")], since, 5)
        mv.pump(self.ctrls, 1.5)
        left = self.rtpe_calls() - before
        print(f"leak: rtpengine holds {len(left)} new calls after the call ended", flush=True)
        if left:
            self.failures.append(f"leak: rtpengine still holds the ended call's session {left}")

    def answerfail(self):
        args = self.args
        since = self.since()
        q_off = log_size(args.qrxferd_log)
        self.c_manual(True)
        try:
            t_call = time.time()
            r = self.a.command("dial", args.dial)
            if not r.get("ok"):
                raise Fail(f"A: dial refused: {r.get('data')}")
            if not mv.wait_events(self.ctrls, [(self.c, "CALL_INCOMING")], since, 10):
                raise Fail("answerfail: C got no call")
            print("answerfail: rtpengine took A's offer; stopped before C answers", flush=True)
            self.rtpe_stop()
            try:
                self.c.command("accept")
                if not mv.wait_events(self.ctrls, [(self.a, "CALL_ESTABLISHED")], since, 6):
                    raise Fail("answerfail: A not established")
                mv.pump(self.ctrls, 1.0)
                # With rtpengine still stopped, only each other's own media can be heard.
                self.check_talk("answerfail", t_call)
            finally:
                self.rtpe_cont()
        finally:
            self.c_manual(False)
        text = tail_of(args.qrxferd_log, q_off)
        line = re.search(r".*unanchored: 1 side\(s\) re-INVITEd.*", text)
        print(f"answerfail: qrxferd says: {line.group(0) if line else None}", flush=True)
        if not line:
            self.failures.append("answerfail: no log line saying C was re-INVITEd unanchored")
        self.rtpe_up(q_off)

    def lateoffer(self):
        args = self.args
        q_off = log_size(args.qrxferd_log)
        trace = os.path.join(args.dir, "lateoffer-msg.log")
        print("lateoffer: SIPp A calls C, then re-INVITEs without SDP", flush=True)
        p = subprocess.Popen([args.sipp, "-sf", args.late_xml, "-s", "c",
                              f"127.0.0.1:{args.qport}", "-i", "127.0.0.1", "-p",
                              str(args.sipp_port), "-mp", str(args.sipp_media), "-m", "1",
                              "-timeout", "20", "-timeout_error", "-nostdin", "-trace_msg",
                              "-message_file", trace],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        rc = None
        t0 = time.monotonic()
        while rc is None and time.monotonic() - t0 < 20:
            mv.pump(self.ctrls, 0.2)
            rc = p.poll()
        if rc is None:
            p.kill()
            p.wait()
        print(f"lateoffer: SIPp A ended ({rc})", flush=True)
        if rc != 0:
            self.failures.append(f"lateoffer: SIPp A exited {rc} (no re-INVITE with C's SDP?)")
        text = tail_of(args.qrxferd_log, q_off)
        line = re.search(r".*outside an INVITE's offer and answer is not anchored.*", text)
        print(f"lateoffer: qrxferd says: {line.group(0) if line else None}", flush=True)
        if not line:
            self.failures.append("lateoffer: no log line saying the ACK's answer unanchors")
        # The last INVITE SIPp received: qrxferd's, with C's own media port.
        try:
            msgs = open(trace, errors="replace").read()
        except OSError:
            msgs = ""
        got = []
        for block in msgs.split("-----------------------------------------------"):
            head, _, msg = block.partition("bytes :")
            m = re.search(r"m=audio (\d+)", msg)
            if "received" in head and msg.lstrip().startswith("INVITE ") and m:
                got.append(m.group(1))
        lo, hi = (int(v) for v in args.c_rtp.split("-"))
        print(f"lateoffer: the re-INVITE to A offers port {got[-1] if got else None} "
              f"(C's {args.c_rtp})", flush=True)
        if not got or not lo <= int(got[-1]) <= hi:
            self.failures.append("lateoffer: A's re-INVITE does not carry C's own port")
        mv.pump(self.ctrls, 1.0)

    def bigsdp(self):
        args = self.args
        q_off = log_size(args.qrxferd_log)
        s = socket.create_connection(("127.0.0.1", args.qport), timeout=5)
        port = s.getsockname()[1]
        body = ("v=0\r\no=big 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                "m=audio 9 RTP/AVP 0\r\n" + "a=x-pad:" + "p" * 66000 + "\r\n")
        head = (f"sip:c@127.0.0.1:{args.qport};transport=tcp SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-big-{port}\r\n"
                f"From: <sip:big@127.0.0.1:{port}>;tag=big{port}\r\n"
                f"To: <sip:c@127.0.0.1:{args.qport}>\r\nCall-ID: big-sdp-{port}@127.0.0.1\r\n")
        inv = (f"INVITE {head}CSeq: 1 INVITE\r\n"
               f"Contact: <sip:big@127.0.0.1:{port};transport=tcp>\r\n"
               f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}")
        print(f"bigsdp: an INVITE over TCP with {len(body)} bytes of SDP", flush=True)
        s.sendall(inv.encode())
        final, buf, cancelled = None, b"", False
        deadline = time.monotonic() + 15
        s.settimeout(0.2)
        while final is None and time.monotonic() < deadline:
            if not cancelled and b"SIP/2.0 100" in buf:
                # C takes its time with such an INVITE: the caller gives up; a final answer
                # (487) shows the call was carried and cleaned up.
                mv.pump(self.ctrls, 0.5)
                s.sendall(f"CANCEL {head}CSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n"
                          f"Content-Length: 0\r\n\r\n".encode())
                cancelled = True
            mv.pump(self.ctrls, 0.05)
            try:
                got = s.recv(65535)
            except socket.timeout:
                continue
            if not got:
                break
            buf += got
            for m in re.finditer(rb"SIP/2.0 (\d{3})[^\r\n]*\r\n(?:[^\r\n]+\r\n)*?CSeq: 1 INVITE", buf):
                if int(m.group(1)) >= 200:
                    final = int(m.group(1))
        print(f"bigsdp: final answer {final}", flush=True)
        if final is None:
            self.failures.append("bigsdp: no final answer to the INVITE within 15 s")
        elif final < 300:
            to = re.search(rb"(?im)^To: (.*)$", buf).group(1).decode().strip()
            ack = head.replace(f"To: <sip:c@127.0.0.1:{args.qport}>", f"To: {to}")
            s.sendall(f"ACK {ack}CSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
                      f"Content-Length: 0\r\n\r\n".encode())
            bye = ack.replace(f"z9hG4bK-big-{port}", f"z9hG4bK-bigbye-{port}")
            s.sendall(f"BYE {bye}CSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
                      f"Content-Length: 0\r\n\r\n".encode())
        mv.pump(self.ctrls, 1.0)
        s.close()
        text = tail_of(args.qrxferd_log, q_off)
        line = re.search(r".*offer: Invalid argument: call .* goes on unanchored.*", text)
        print(f"bigsdp: qrxferd says: {line.group(0) if line else None}", flush=True)
        if not line:
            self.failures.append("bigsdp: no log line saying the ng offer could not be sent")
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "netutil.py"),
                            "options", str(args.qport), "5"], capture_output=True)
        if r.returncode != 0:
            self.failures.append("bigsdp: qrxferd no longer answers OPTIONS")

    def badsdp(self):
        args = self.args
        q_off = log_size(args.qrxferd_log)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        port = s.getsockname()[1]
        body = "hello, this is not SDP\r\n"
        head = (f"sip:c@127.0.0.1:{args.qport} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-bad-{port}\r\n"
                f"From: <sip:stranger@127.0.0.1:{port}>;tag=bad{port}\r\n"
                f"To: <sip:c@127.0.0.1:{args.qport}>\r\nCall-ID: bad-sdp-{port}@127.0.0.1\r\n")
        inv = (f"INVITE {head}CSeq: 1 INVITE\r\nContact: <sip:stranger@127.0.0.1:{port}>\r\n"
               f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}")
        print("badsdp: a stranger's INVITE with an SDP rtpengine cannot parse", flush=True)
        s.sendto(inv.encode(), ("127.0.0.1", args.qport))
        final, to, phrase = None, None, None
        deadline = time.monotonic() + 10
        while final is None and time.monotonic() < deadline:
            mv.pump(self.ctrls, 0.05)
            try:
                msg = s.recv(65535).decode("utf-8", "replace")
            except socket.timeout:
                continue
            m = re.match(r"SIP/2.0 (\d{3}) ([^\r\n]*)", msg)
            if m and int(m.group(1)) >= 200 and "INVITE" in msg.split("CSeq:", 1)[1][:20]:
                final = int(m.group(1))
                phrase = m.group(2).strip()
                to = re.search(r"(?im)^To: (.*)$", msg).group(1).strip()
        print(f"badsdp: final answer {final} {phrase}", flush=True)
        if final is None:
            self.failures.append("badsdp: no final answer to the INVITE within 10 s")
        elif (final, phrase) != (500, "Call Error"):
            # C (baresip) refuses the SDP it cannot parse: its own answer, relayed.
            self.failures.append(f"badsdp: final answer {final} {phrase}, expected C's own "
                                 "500 Call Error (the INVITE went on as it came)")
        else:
            ack_head = head.replace(f"To: <sip:c@127.0.0.1:{args.qport}>", f"To: {to}")
            s.sendto(f"ACK {ack_head}CSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
                     f"Content-Length: 0\r\n\r\n".encode(), ("127.0.0.1", args.qport))
            if final < 300:
                bye = ack_head.replace(f"branch=z9hG4bK-bad-{port}", f"branch=z9hG4bK-bye-{port}")
                s.sendto(f"BYE {bye}CSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
                         f"Content-Length: 0\r\n\r\n".encode(), ("127.0.0.1", args.qport))
        s.close()
        mv.pump(self.ctrls, 1.0)
        text = tail_of(args.qrxferd_log, q_off)
        line = re.search(r".*offer refused: .*goes on unanchored.*", text)
        print(f"badsdp: qrxferd says: {line.group(0) if line else None}", flush=True)
        if not line:
            self.failures.append("badsdp: no log line saying the call goes on unanchored")
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "netutil.py"),
                            "options", str(args.qport), "5"], capture_output=True)
        if r.returncode != 0:
            self.failures.append("badsdp: qrxferd no longer answers OPTIONS")

    def killed(self):
        args = self.args
        call_id, t_call = self.call()
        q_off = log_size(args.qrxferd_log)
        a_off = log_size(args.a_log)
        print(f"killed: rtpengine (pid {args.rtpengine_pid}) gets SIGKILL mid-call", flush=True)
        os.kill(args.rtpengine_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        line = None
        while time.monotonic() < deadline and not line:
            mv.pump(self.ctrls, 0.2)
            m = re.search(r".*rtpengine .* does not answer.*", tail_of(args.qrxferd_log, q_off))
            line = m.group(0) if m else None
        print(f"killed: qrxferd says: {line}", flush=True)
        if not line or "1 anchored calls go on unanchored (1 re-INVITEd" not in line:
            self.failures.append("killed: no log line saying the call goes on unanchored")
        mv.pump(self.ctrls, 2.5)
        # A's SIP trace (-s): the re-INVITE qrxferd sent it carries C's own media port; with
        # rtpengine dead, the tones heard at the end can only come straight from each other.
        ports = [int(p) for p in re.findall(r"m=audio (\d+)", tail_of(args.a_log, a_off))]
        lo, hi = (int(v) for v in args.c_rtp.split("-"))
        print(f"killed: SDP ports in A's SIP trace since the kill: {ports} (C's {args.c_rtp})",
              flush=True)
        if not any(lo <= p <= hi for p in ports):
            self.failures.append("killed: A was not offered C's own media port")
        self.check_talk("killed", t_call)


def main():
    ap = argparse.ArgumentParser()
    for who in ("a", "b", "c"):
        ap.add_argument(f"--{who}-ctrl", type=int, required=True)
    for who in ("a", "c"):
        ap.add_argument(f"--{who}-log", required=True)
        ap.add_argument(f"--{who}-rec", required=True)
        ap.add_argument(f"--{who}-tone", type=int, required=True)
    ap.add_argument("--c-rtp", required=True)
    ap.add_argument("--dial", required=True)
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--qrxferd-log", required=True)
    ap.add_argument("--qport", type=int, required=True)
    ap.add_argument("--sipp", required=True)
    ap.add_argument("--silent-xml", required=True)
    ap.add_argument("--sipp-port", type=int, required=True)
    ap.add_argument("--sipp-media", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rtpengine-pid", type=int, required=True)
    ap.add_argument("--undo-secs", type=float, required=True)
    ap.add_argument("--ng-port", type=int, required=True)
    ap.add_argument("--late-xml", required=True)
    ap.add_argument("scenarios", nargs="*",
                    default=["rollback", "undo", "redial", "undorace", "heldend", "leak", "answerfail",
                             "lateoffer", "bigsdp", "badsdp", "killed"])
    args = ap.parse_args()
    run = None
    try:
        run = Run(args)
        for name in args.scenarios:
            try:
                getattr(run, name)()
            except Fail as e:
                run.failures.append(str(e))
    except (CtrlError, OSError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        return 1
    finally:
        if run:
            for x in run.ctrls:
                x.close()
    for f in run.failures:
        print(f"FAIL: {f}", flush=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
