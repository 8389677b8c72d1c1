#!/usr/bin/env python3
"""tests/chromium/watch.py: two Chromium pages on one watch page, driven over CDP.

  watch.py PROFILE1 PROFILE2 DIR

Each PROFILE is a running headless Chromium's --user-data-dir (cdp.py). Steps: both pages
load the video (media.py mp4: 128x64, 10 frames a second, each frame's number in its top
row); page 1 plays, page 2 must follow; page 2 seeks to 6 s, page 1 must follow; page 1
pauses, page 2 must follow. After each step the two positions are sampled for 1.5 s and must
stay within 0.5 s of each other (positions read back to back, corrected by the pages' own
clocks for the time between the two reads while playing), and each page's picture must be
the frame of its position (read from the picture, not from the player's clock); paused, the
two pictures must be within 0.5 s of each other. Then DIR/react is made (C reacts at 0.25, 0.75)
and both pages must show it there; then DIR/hangup, and both pages must say it ended.
Prints one line per step; exit 1 on the first failure.
"""
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

LIMIT = 0.5
FPS = 10        # media.py's video
PICTURE = 0.35  # a picture this far from its page's position is not the position's frame
T0 = time.monotonic()


class Page:
    def __init__(self, profile, secs=30):
        page = cdp.find_page(profile, time.monotonic() + secs, "/w/")
        self.s = cdp.ws_connect(page["webSocketDebuggerUrl"])
        self.seq = 0

    def js(self, expr):
        self.seq += 1
        cdp.ws_send(self.s, json.dumps({"id": self.seq, "method": "Runtime.evaluate",
                                        "params": {"expression": expr, "returnByValue": True,
                                                   "awaitPromise": False}}))
        while True:
            reply = json.loads(cdp.ws_recv(self.s))
            if reply.get("id") == self.seq:
                return reply.get("result", {}).get("result", {}).get("value")


def state(p):
    """The page's position with the page's own wall clock (ms) at the moment it was read:
    both Chromiums share the machine's clock, so CDP's latency does not enter the measure."""
    v = p.js("(function(){var v=document.getElementById('v');return JSON.stringify({t:v.currentTime,"
             "now:Date.now(),paused:v.paused,ready:v.readyState,w:v.videoWidth,h:v.videoHeight,"
             "status:document.getElementById('status').textContent})})()")
    if not isinstance(v, str):  # the page is not there yet (still loading)
        return {"t": 0, "now": 0, "paused": True, "ready": 0, "status": "", "w": 0, "h": 0}
    return json.loads(v)


# The frame the page shows: its picture drawn on a canvas, the top row's 8 blocks read as bits,
# with the position read at the same moment; -1 when there is no picture.
PICTURE_JS = ("(function(){var v=document.getElementById('v');if(v.readyState<2)return '';"
              "var c=document.createElement('canvas');c.width=128;c.height=64;"
              "var x=c.getContext('2d');var t=v.currentTime;x.drawImage(v,0,0,128,64);var n=0;"
              "for(var i=0;i<8;i++){var d=x.getImageData(16*i+8,8,1,1).data;"
              "n=n*2+(d[0]>128?1:0);}return JSON.stringify({f:n,t:t,paused:v.paused})})()")


def picture(p, what):
    v = p.js(PICTURE_JS)
    if not isinstance(v, str) or not v:
        raise SystemExit("FAIL %s: a page shows no picture (%r)" % (what, v))
    o = json.loads(v)
    o["at"] = o["f"] / float(FPS)
    # while playing the picture may be a frame behind the clock read just before it
    slack = PICTURE + (0 if o["paused"] else 1.0 / FPS)
    if abs(o["at"] - o["t"]) > slack:
        raise SystemExit("FAIL %s: a page shows frame %d (%.1f s) at position %.3f" % (
            what, o["f"], o["at"], o["t"]))
    return o


def wait(what, fn, secs=15):
    deadline = time.monotonic() + secs
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit("FAIL %s" % what)
        time.sleep(0.1)


def in_sync(p1, p2, what, secs=1.5):
    worst = 0.0
    frames = None
    end = time.monotonic() + secs
    while time.monotonic() < end:
        a, b = state(p1), state(p2)
        # A page that did not answer (or lost its media) reads as 0 and paused: never "in sync".
        if not a["ready"] or not b["ready"]:
            raise SystemExit("FAIL %s: a page has no media to compare (%r, %r)" % (what, a, b))
        playing = not a["paused"] and not b["paused"]
        d = abs(a["t"] + ((b["now"] - a["now"]) / 1000.0 if playing else 0) - b["t"])
        worst = max(worst, d)
        pa, pb = picture(p1, what), picture(p2, what)
        frames = (pa["f"], pb["f"])
        if a["paused"] and b["paused"] and abs(pa["at"] - pb["at"]) > LIMIT:
            raise SystemExit("FAIL %s: paused pages show frames %d and %d" % (
                what, pa["f"], pb["f"]))
        if d > LIMIT:
            raise SystemExit("FAIL %s: pages %.3f s apart (%.3f at %s, %.3f at %s)" % (
                what, d, a["t"], "paused" if a["paused"] else "playing", b["t"],
                "paused" if b["paused"] else "playing"))
        time.sleep(0.1)
    print("ok %s: at most %.3f s apart, each showing its position's frame (last %d and %d)"
          " (%.1f s)" % (what, worst, frames[0], frames[1], time.monotonic() - T0))
    return worst


def main(a):
    p1, p2 = Page(a[0]), Page(a[1])
    d = a[2]
    for p in (p1, p2):
        wait("media loaded and paused", lambda: (lambda s: s["ready"] >= 2 and s["paused"] and
                                                 s["status"] == "Paused")(state(p)))
        s = state(p)
        if (s["w"], s["h"]) != (128, 64):
            raise SystemExit("FAIL a page plays no 128x64 video: %dx%d" % (s["w"], s["h"]))
    in_sync(p1, p2, "loaded")
    p1.js("document.getElementById('v').play()")
    wait("page 2 follows play", lambda: not state(p2)["paused"])
    time.sleep(1.0)
    in_sync(p1, p2, "playing")
    if os.environ.get("WATCH_DEBUG"):
        for p in (p1, p2):
            print(p.js("JSON.stringify(performance.getEntriesByType('resource').map(function(e){return [e.name.slice(-40),e.startTime|0,e.responseEnd|0]}))"))
    p2.js("document.getElementById('v').currentTime=6")
    wait("page 1 follows seek", lambda: 5.8 < state(p1)["t"] < 8.5)
    in_sync(p1, p2, "after seek")
    if not (5.8 < state(p2)["t"] < 9.5):
        raise SystemExit("FAIL page 2 left the seek's position: %.3f" % state(p2)["t"])
    p1.js("document.getElementById('v').pause()")
    wait("page 2 follows pause", lambda: state(p2)["paused"])
    in_sync(p1, p2, "paused")
    open(os.path.join(d, "react"), "w").close()
    for i, p in enumerate((p1, p2)):
        got = wait("page %d shows the reaction" % (i + 1), lambda: p.js(
            "(function(){var e=document.querySelector('#layer .reaction');return e?"
            "JSON.stringify({t:e.textContent,l:e.style.left,top:e.style.top}):''})()"))
        o = json.loads(got)
        if o["t"] != "\U0001F44D" or o["l"] != "25%" or o["top"] != "75%":
            raise SystemExit("FAIL page %d shows %s, not a thumbs-up at 25%%/75%%" % (i + 1, got))
    print("ok reaction shown at its position on both pages (%.1f s)" % (time.monotonic() - T0))
    open(os.path.join(d, "hangup"), "w").close()
    for i, p in enumerate((p1, p2)):
        wait("page %d says it ended" % (i + 1), lambda: "ended" in state(p)["status"], 40)
    print("ok both pages say the watch ended (%.1f s)" % (time.monotonic() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
