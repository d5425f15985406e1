// The subscribe peer connection: the server offers, this client answers, and the server
// renegotiates as forwarded tracks come and go (docs/PROTOCOL.md, Media). No DOM code here.
//
// Which remote track an m-line carries is told by `track_map` (MID -> track id), not by the SDP:
// the SFU reuses m-lines. Audio m-lines are "slots" carrying whoever is loudest; all are played.

import { candidateMessage, remoteCandidate } from "./candidates.js";

export class Subscriber extends EventTarget {
  /** Events: `change` (tracks or their mapping changed), `state` {state}, `error` {error}. */
  /** `e2ee`: FrameTransforms (e2ee/transforms.js) in an end-to-end encrypted room, else null. */
  constructor({ iceServers, send, PeerConnection = globalThis.RTCPeerConnection, e2ee = null }) {
    super();
    this._send = send;
    this._e2ee = e2ee;
    this.pc = new PeerConnection({ iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require", ...(e2ee ? e2ee.rtcConfig() : {}) });
    this._trackMap = new Map(); // MID -> remote track id
    this._pendingCandidates = [];
    this._chain = Promise.resolve();
    this.closed = false;
    // Local candidates go out only after the answer they belong to (the server needs it first).
    this._answered = false;
    this._localCandidates = [];
    this.pc.addEventListener("icecandidate", (ev) => {
      const msg = candidateMessage("subscribe", ev.candidate);
      if (!msg) return;
      if (this._answered) this._send(msg);
      else this._localCandidates.push(msg);
    });
    this.pc.addEventListener("track", (ev) => {
      // before the first frame reaches the decoder; the sender is told later (retarget)
      if (this._e2ee && ev.receiver) this._e2ee.attachReceiver(ev.receiver, ev.track.kind);
      this._changed();
    });
    this.pc.addEventListener("connectionstatechange", () => {
      this.dispatchEvent(new CustomEvent("state", { detail: { state: this.pc.connectionState } }));
    });
  }

  get connectionState() {
    return this.pc.connectionState;
  }

  /** Answers a server offer; offers are handled strictly in order. */
  handleOffer(sdp) {
    this._chain = this._chain.then(() => this._answer(sdp));
    return this._chain;
  }

  async _answer(sdp) {
    if (this.closed) return;
    try {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      for (const c of this._pendingCandidates.splice(0)) await this._addCandidate(c);
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      this._send({ type: "subscribe_answer", sdp: this.pc.localDescription.sdp });
      this._answered = true;
      for (const msg of this._localCandidates.splice(0)) this._send(msg);
      this._changed();
    } catch (error) {
      this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
    }
  }

  setTrackMap(mids) {
    this._trackMap = new Map(Object.entries(mids || {}).filter(([, id]) => typeof id === "string"));
    this._changed();
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
      // late candidates of an old generation are harmless
    }
  }

  _receiving() {
    return this.pc
      .getTransceivers()
      .filter((t) => t.mid !== null && t.receiver && t.receiver.track && isReceiving(t));
  }

  /** The received MediaStreamTrack that carries remote track `trackId`, or null. */
  trackFor(trackId) {
    for (const t of this._receiving()) {
      if (this._trackMap.get(t.mid) === trackId) return t.receiver.track;
    }
    return null;
  }

  /** The remote track id each receiving video MID carries: [{mid, trackId, track}]. */
  videoTracks() {
    return this._receiving()
      .filter((t) => t.receiver.track.kind === "video")
      .map((t) => ({ mid: t.mid, trackId: this._trackMap.get(t.mid) || null, track: t.receiver.track }));
  }

  /** Every receiving audio slot's track: all of them are played. */
  audioTracks() {
    return this._receiving()
      .filter((t) => t.receiver.track.kind === "audio")
      .map((t) => ({ mid: t.mid, trackId: this._trackMap.get(t.mid) || null, track: t.receiver.track }));
  }

  /** Every receiving m-line: [{mid, trackId, receiver}] (for pointing decryption at its sender). */
  receivers() {
    return this._receiving().map((t) => ({ mid: t.mid, trackId: this._trackMap.get(t.mid) || null, receiver: t.receiver }));
  }

  getStats() {
    return this.pc.getStats();
  }

  _changed() {
    this.dispatchEvent(new CustomEvent("change"));
  }

  close() {
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }
}

function isReceiving(t) {
  const dir = t.currentDirection || t.direction;
  return dir === "recvonly" || dir === "sendrecv";
}
