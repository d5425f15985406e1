"""What end-to-end encryption costs a browser: a meeting of 9 tiles in Chromium, with and without
E2EE, and the CPU the browsers use and the time the E2EE worker spends per frame.

    .venv/bin/python -m bench.e2ee_browser [--publishers 8] [--warmup 20] [--duration 30]
                                           [--modes clear,e2ee]

For each mode a fresh room on one confserver with the SFU (TLS off, loopback): one Chromium runs
the watcher (one page that publishes camera and microphone and shows the 8 others: 9 tiles), a
second Chromium the publishers (one page each, camera and microphone from Chromium's fake
devices, three simulcast layers). After the warm-up the script reads each browser's CPU time per
process (CDP SystemInfo.getProcessInfo) at the start and the end of the window and reports it as
a percentage of one core, with the watcher's renderer (the page: decoding, decryption, drawing)
apart. In the E2EE room it also asks each page's worker for its counters (frames encrypted and
decrypted and the milliseconds spent) and reports microseconds per frame. Frames decoded per
second on the watcher show both modes did the same work.

A script, not a test: the figures depend on the machine (docs/E2EE.md has a run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

from bench import positive
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, Server

COLLECT = """
(() => {
  const PC = window.RTCPeerConnection;
  window.__pcs = [];
  function Collected(...args) { const pc = new PC(...args); window.__pcs.push(pc); return pc; }
  Collected.prototype = PC.prototype;
  Object.setPrototypeOf(Collected, PC);
  window.RTCPeerConnection = Collected;
  const W = window.Worker;
  window.__workers = [];
  window.Worker = function (...args) { const w = new W(...args); window.__workers.push(w); return w; };
  window.Worker.prototype = W.prototype;
})();
"""

FRAMES_DECODED = """
async () => {
  let n = 0;
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded || 0;
    });
  }
  return n;
}
"""

# Publishers capture 640x360 at 10 fps (Chromium sends two layers, 160 and 320 wide), so that eight
# encoders leave the two cores of a small machine room for the watcher.
SMALL_CAMERA = """
(() => {
  const md = navigator.mediaDevices;
  const gum = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => {
    if (!c || !c.video) return gum(c);
    const asked = typeof c.video === 'object' ? c.video : {};
    const video = { ...asked, width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 10 } };
    return gum({ ...c, video });
  };
})();
"""

ENCODED_FPS = """
async () => {
  let fps = 0;
  for (const pc of window.__pcs) {
    if (pc.connectionState === 'closed') continue;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') fps += s.framesPerSecond || 0;
    });
  }
  return fps;
}
"""

WORKER_STATS = """
async () => {
  const w = window.__workers.at(-1);
  if (!w) return null;
  return await new Promise((resolve) => {
    const on = (ev) => {
      if (ev.data && ev.data.type === 'stats') { w.removeEventListener('message', on); resolve(ev.data); }
    };
    w.addEventListener('message', on);
    w.postMessage({ type: 'stats' });
  });
}
"""


def cpu_times(browser: Browser) -> dict[str, float]:
    """Seconds of CPU per process type of one Chromium (renderer, gpu, utility, browser)."""
    session = browser.new_browser_cdp_session()
    try:
        info = session.send("SystemInfo.getProcessInfo")
    finally:
        session.detach()
    totals: dict[str, float] = {}
    for proc in info["processInfo"]:
        totals[proc["type"]] = totals.get(proc["type"], 0.0) + float(proc["cpuTime"])
    return totals


def join(browser: Browser, server: Server, room: str, identity: str, *, small: bool = False) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.add_init_script(COLLECT + (SMALL_CAMERA if small else ""))
    page = context.new_page()
    page.goto(server.link(room, identity, name=identity))
    page.get_by_test_id("join").click()
    page.wait_for_selector("#view-meeting:not([hidden])")
    return page


def worker_totals(pages: list[Page]) -> dict[str, dict[str, float]]:
    totals = {side: {"frames": 0.0, "dropped": 0.0, "ms": 0.0} for side in ("encrypt", "decrypt")}
    for page in pages:
        stats = page.evaluate(WORKER_STATS)
        if not stats:
            continue
        for side in totals:
            totals[side]["frames"] += stats[side]["frames"] + stats[side]["dropped"]
            totals[side]["dropped"] += stats[side]["dropped"]
            totals[side]["ms"] += stats[side]["ms"]
    return totals


def run_mode(
    pw: Any, server: Server, mode: str, publishers: int, warmup: float, duration: float
) -> dict[str, Any]:
    room = f"bench-{mode}-{int(time.time())}"
    server.create_room(room, e2ee=mode == "e2ee")
    launch = {"executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}
    watcher_browser = pw.chromium.launch(**launch)
    publisher_browser = pw.chromium.launch(**launch)
    try:
        pubs = [
            join(publisher_browser, server, room, f"pub-{i:02d}", small=True)
            for i in range(1, publishers + 1)
        ]
        watcher = join(watcher_browser, server, room, "watcher")
        watcher.wait_for_function(
            "(n) => document.querySelectorAll('#stage .tile[data-video=on]').length >= n",
            arg=publishers + 1,
            timeout=60_000,
        )
        time.sleep(warmup)
        pages = [watcher, *pubs]
        t0, w0, p0, f0 = (
            time.monotonic(),
            cpu_times(watcher_browser),
            cpu_times(publisher_browser),
            watcher.evaluate(FRAMES_DECODED),
        )
        k0 = worker_totals([watcher]), worker_totals(pubs)
        time.sleep(duration)
        t1, w1, p1, f1 = (
            time.monotonic(),
            cpu_times(watcher_browser),
            cpu_times(publisher_browser),
            watcher.evaluate(FRAMES_DECODED),
        )
        k1 = worker_totals([watcher]), worker_totals(pubs)
        wall = t1 - t0
        tiles = watcher.evaluate("document.querySelectorAll('#stage .tile[data-source=camera]').length")

        def pct(a: dict[str, float], b: dict[str, float], kind: str | None = None) -> float:
            keys = [kind] if kind else list(b)
            return 100.0 * sum(b.get(k, 0.0) - a.get(k, 0.0) for k in keys) / wall

        def per_frame(
            side: str, before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
        ) -> float | None:
            frames = after[side]["frames"] - before[side]["frames"]
            return 1000.0 * (after[side]["ms"] - before[side]["ms"]) / frames if frames else None

        del pages
        return {
            "mode": mode,
            "tiles": tiles,
            "seconds": round(wall, 1),
            "watcher_cpu_pct": round(pct(w0, w1), 1),
            "watcher_renderer_cpu_pct": round(pct(w0, w1, "renderer"), 1),
            "publishers_cpu_pct": round(pct(p0, p1), 1),
            "watcher_frames_decoded_per_s": round((f1 - f0) / wall, 1),
            "decrypt_us_per_frame": per_frame("decrypt", k0[0], k1[0]),
            "encrypt_us_per_frame": per_frame("encrypt", k0[1], k1[1]),
            "watcher_decrypted_frames_per_s": round(
                (k1[0]["decrypt"]["frames"] - k0[0]["decrypt"]["frames"]) / wall, 1
            ),
            "watcher_undecryptable_frames_per_s": round(
                (k1[0]["decrypt"]["dropped"] - k0[0]["decrypt"]["dropped"]) / wall, 1
            ),
            "publishers_encoded_fps": round(sum(p.evaluate(ENCODED_FPS) for p in pubs), 1),
        }
    finally:
        watcher_browser.close()
        publisher_browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--publishers", type=positive, default=8)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--modes", default="clear,e2ee")
    parser.add_argument("--rounds", type=positive, default=1, help="the modes again, in turn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), media=True)
        server.start()
        try:
            with sync_playwright() as pw:
                for _ in range(args.rounds):
                    for mode in args.modes.split(","):
                        print(
                            json.dumps(
                                run_mode(pw, server, mode, args.publishers, args.warmup, args.duration)
                            ),
                            flush=True,
                        )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
