// Attaching the E2EE worker to WebRTC senders and receivers. WebRTC API only, no DOM.
//
// Two ways, the standard one first:
//   "script"  RTCRtpScriptTransform: `sender.transform = new RTCRtpScriptTransform(worker, options)`
//   "streams" Chromium's older createEncodedStreams(): the page posts both streams to the worker;
//             the peer connections must then be made with `encodedInsertableStreams: true`.
// A browser with neither cannot take part in an E2EE meeting (it would send in clear).

/** "script", "streams" or null: how this browser can transform encoded frames. */
export function encodedTransformSupport(g = globalThis) {
  if (typeof g.RTCRtpScriptTransform === "function") return "script";
  const sender = g.RTCRtpSender && g.RTCRtpSender.prototype;
  const receiver = g.RTCRtpReceiver && g.RTCRtpReceiver.prototype;
  if (sender && receiver && typeof sender.createEncodedStreams === "function" && typeof receiver.createEncodedStreams === "function") {
    return "streams";
  }
  return null;
}

let streamCount = 0;

export class FrameTransforms {
  /** `worker`: the E2EE worker; `mode`: encodedTransformSupport(); `ScriptTransform` for tests. */
  constructor({ worker, mode, ScriptTransform = globalThis.RTCRtpScriptTransform }) {
    if (mode !== "script" && mode !== "streams") throw new Error("no encoded transforms in this browser");
    this.worker = worker;
    this.mode = mode;
    this.ScriptTransform = ScriptTransform;
    this.receivers = new Map(); // RTCRtpReceiver → stream id
  }

  /** What the peer connections' configuration needs. */
  rtcConfig() {
    return this.mode === "streams" ? { encodedInsertableStreams: true } : {};
  }

  /** Encrypts everything `sender` sends (every simulcast layer of it). `kind`: "audio" | "video". */
  attachSender(sender, kind) {
    const options = { direction: "send", id: `s${++streamCount}` };
    if (kind === "audio") options.codec = "audio/opus";
    this._attach(sender, options);
  }

  /** Decrypts what `receiver` receives; `sender` is the publisher's sid when known ("" if not). */
  attachReceiver(receiver, kind, sender = "") {
    if (this.receivers.has(receiver)) return;
    const id = `r${++streamCount}`;
    this.receivers.set(receiver, id);
    const options = { direction: "recv", sender, id };
    if (kind === "audio") options.codec = "audio/opus";
    this._attach(receiver, options);
  }

  /** The SFU moved another publisher's track onto `receiver`'s m-line. */
  retarget(receiver, sender) {
    const id = this.receivers.get(receiver);
    if (id && typeof sender === "string") this.worker.postMessage({ type: "retarget", id, sender });
  }

  _attach(endpoint, options) {
    if (this.mode === "script") {
      endpoint.transform = new this.ScriptTransform(this.worker, options);
      return;
    }
    const { readable, writable } = endpoint.createEncodedStreams();
    this.worker.postMessage({ type: "stream", ...options, readable, writable }, [readable, writable]);
  }
}
