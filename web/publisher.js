// The publish peer connection: this client offers, the server answers (docs/PROTOCOL.md, Media).
// No DOM code here.
//
// One sending m-line per source: camera (three simulcast layers), microphone, screen and the
// screen's audio. A transceiver is added the first time its source has a track; turning a camera
// off replaces the track with null (the device light goes off, no renegotiation); stopping a
// screen share stops its transceiver and renegotiates. Negotiations run one at a time.
// The server says which layers of each video m-line some subscriber wants (`publish_layers`):
// the others are switched off (`encodings[i].active`), so an unwatched camera costs no uplink.

import { candidateMessage, remoteCandidate } from "./candidates.js";

/** Simulcast layers, lowest first: the order the SFU expects (see AIORTC.md). */
export const CAMERA_LAYERS = Object.freeze([
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000, maxFramerate: 15 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000, maxFramerate: 30 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000, maxFramerate: 30 },
]);
const SCREEN_ENCODING = { maxBitrate: 2_500_000, maxFramerate: 15 };
const ANSWER_TIMEOUT_MS = 15_000;

export class Publisher extends EventTarget {
  /** `send(msg)` queues a signaling message. Events: `state` {state}, `error` {error}. */
  /** `e2ee`: FrameTransforms (e2ee/transforms.js) in an end-to-end encrypted room, else null. */
  constructor({ iceServers, send, PeerConnection = globalThis.RTCPeerConnection, e2ee = null }) {
    super();
    this._send = send;
    this._e2ee = e2ee;
    this.pc = new PeerConnection({ iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require", ...(e2ee ? e2ee.rtcConfig() : {}) });
    this._transceivers = new Map(); // source -> RTCRtpTransceiver
    this._dims = new Map(); // source -> {width, height}
    this._pendingCandidates = [];
    this._dirty = false;
    this._running = false;
    this._waiter = null;
    this._iceRestart = false;
    this._layers = Promise.resolve(); // setParameters calls, one at a time
    this.closed = false;
    // Local candidates wait until the server has answered: before that it has no connection to
    // add them to. Later ones (trickled after the answer) go out at once.
    this._localCandidates = [];
    this.pc.addEventListener("icecandidate", (ev) => {
      const msg = candidateMessage("publish", ev.candidate);
      if (!msg) return;
      if (this.pc.remoteDescription) this._send(msg);
      else this._localCandidates.push(msg);
    });
    this.pc.addEventListener("connectionstatechange", () => {
      const state = this.pc.connectionState;
      this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
      if (state === "failed" && !this.closed) this.restartIce();
    });
  }

  get connectionState() {
    return this.pc.connectionState;
  }

  /** Sends `track` as `source` ("camera", "microphone", "screen", "screen_audio"); null stops
   *  sending it. Resolves once the track is in place (negotiation continues in the background). */
  async setTrack(source, track) {
    if (this.closed) return;
    const existing = this._transceivers.get(source);
    if (track) this._dims.set(source, trackSize(track));
    if (existing && !existing.stopped && existing.currentDirection !== "stopped") {
      if (!track && (source === "screen" || source === "screen_audio")) {
        existing.stop();
        this._transceivers.delete(source);
        this.negotiate();
        return;
      }
      await existing.sender.replaceTrack(track);
      return;
    }
    if (!track) return;
    const init = { direction: "sendonly", streams: [] };
    if (source === "camera") init.sendEncodings = CAMERA_LAYERS.map((l) => ({ ...l }));
    if (source === "screen") init.sendEncodings = [{ ...SCREEN_ENCODING }];
    const transceiver = this.pc.addTransceiver(track, init);
    if (source === "camera" || source === "screen") preferCodecs(transceiver, !!this._e2ee);
    // every frame of every layer is encrypted before it leaves; nothing is sent before that
    if (this._e2ee) this._e2ee.attachSender(transceiver.sender, track.kind);
    this._transceivers.set(source, transceiver);
    this.negotiate();
  }

  /** The MID of a source's m-line, once negotiated. */
  midOf(source) {
    const t = this._transceivers.get(source);
    return t ? t.mid : null;
  }

  /** Queues a negotiation; several requests while one runs become one more offer. */
  negotiate() {
    this._dirty = true;
    if (!this._running) this._run();
  }

  restartIce() {
    this._iceRestart = true;
    this.negotiate();
  }

  async _run() {
    this._running = true;
    try {
      while (this._dirty && !this.closed) {
        this._dirty = false;
        const offer = await this.pc.createOffer(this._iceRestart ? { iceRestart: true } : {});
        this._iceRestart = false;
        await this.pc.setLocalDescription(offer);
        const answered = new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("no publish_answer in time")), ANSWER_TIMEOUT_MS);
          this._waiter = {
            resolve: () => (clearTimeout(timer), resolve()),
            reject: (e) => (clearTimeout(timer), reject(e)),
          };
        });
        this._send({ type: "publish_offer", sdp: this.pc.localDescription.sdp, tracks: this._describeTracks() });
        await answered;
      }
    } catch (error) {
      if (!this.closed) this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
    } finally {
      this._waiter = null;
      this._running = false;
    }
  }

  _describeTracks() {
    const tracks = [];
    for (const [source, t] of this._transceivers) {
      if (!t.mid || t.stopped) continue;
      const entry = { mid: t.mid, source };
      const dims = this._dims.get(source);
      if (dims && dims.width && dims.height) Object.assign(entry, dims);
      tracks.push(entry);
    }
    return tracks;
  }

  async handleAnswer(sdp) {
    if (this.closed || this.pc.signalingState !== "have-local-offer") return;
    try {
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      for (const msg of this._localCandidates.splice(0)) this._send(msg);
      for (const c of this._pendingCandidates.splice(0)) await this._addCandidate(c);
      if (this._waiter) this._waiter.resolve();
    } catch (error) {
      if (this._waiter) this._waiter.reject(error);
    }
  }

  /** Sends only the encodings of m-line `mid` whose rid is in `layers` ("" for one without rid),
   *  as `publish_layers` asks. Unknown MIDs and a sender not negotiated yet are ignored: the
   *  server starts from every layer on, so an ignored message leaves a layer on, never off. */
  setActiveLayers(mid, layers) {
    if (this.closed || typeof mid !== "string" || !Array.isArray(layers)) return this._layers;
    const wanted = new Set(layers.filter((l) => typeof l === "string"));
    this._layers = this._layers.then(() => this._applyLayers(mid, wanted));
    return this._layers;
  }

  async _applyLayers(mid, wanted) {
    const transceiver = [...this._transceivers.values()].find((t) => t.mid === mid && !t.stopped);
    if (!transceiver || this.closed) return;
    const sender = transceiver.sender;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length === 0) return;
    let changed = false;
    for (const encoding of params.encodings) {
      const active = wanted.has(encoding.rid ?? "");
      if (encoding.active !== active) {
        encoding.active = active;
        changed = true;
      }
    }
    if (!changed) return;
    try {
      await sender.setParameters(params);
    } catch (error) {
      if (!this.closed) this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
    }
  }

  /** The server refused the offer (its error arrives as a signaling `error`). */
  refuse(error) {
    if (this._waiter) this._waiter.reject(error);
  }

  async addRemoteCandidate(candidate) {
    if (this.closed) return;
    if (!this.pc.remoteDescription) {
      this._pendingCandidates.push(candidate);
      return;
    }
    await this._addCandidate(candidate);
  }

  async _addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(remoteCandidate(candidate));
    } catch {
      // a candidate for an old generation after an ICE restart: harmless
    }
  }

  /** Sender statistics, for the connection-quality indicator. */
  getStats() {
    return this.pc.getStats();
  }

  close() {
    this.closed = true;
    if (this._waiter) this._waiter.reject(new Error("closed"));
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }
}

function trackSize(track) {
  const s = track.getSettings ? track.getSettings() : {};
  return s.width && s.height ? { width: s.width, height: s.height } : {};
}

/** Prefer VP8 (simulcast in every browser, forwarded by the SFU), then H.264, then the rest. With
 *  end-to-end encryption only VP8 and H.264 (and their helpers: RTX, RED, FEC) are offered: the
 *  frame encryption leaves other codecs' frames unsent (e2ee/frame.js). */
export function preferCodecs(transceiver, e2ee = false) {
  const caps = globalThis.RTCRtpSender && RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const rank = (c) => (/vp8$/i.test(c.mimeType) ? 0 : /h264$/i.test(c.mimeType) ? 1 : 2);
  const media = (c) => !/\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType);
  const allowed = (c) => !e2ee || !media(c) || rank(c) < 2;
  const codecs = [...caps.codecs].filter(allowed).sort((a, b) => rank(a) - rank(b));
  try {
    transceiver.setCodecPreferences(codecs);
  } catch {
    // the browser refuses some orders: keep its own
  }
}
