// The media side of one joined session: publish and subscribe peer connections, the remote tracks
// the server announces, what this client subscribes to, and who is speaking. No DOM code here.
//
// A new MediaSession is made for every (re)join; `media_reset` (the server's media worker
// stopped) starts its connections anew within the same session. When the server has no media
// service it answers the first media message with `media_unavailable`: the session then closes
// its connections and reports status "unavailable"; the meeting itself (chat, participants,
// moderation) goes on.
//
// Events: status {status}   "connecting" | "connected" | "failed" (ICE; may recover) |
//                           "unavailable" (no media service) | "unsupported" (no WebRTC) | "closed"
//         tracks            remote publications or received tracks changed
//         speakers {speakers}
//         warning {code, message}

import { Publisher } from "./publisher.js";
import { Subscriber } from "./subscriber.js";
import { SubscriptionPlanner } from "./subscriptions.js";

export const SOURCES = ["camera", "microphone", "screen", "screen_audio"];

export class MediaSession extends EventTarget {
  /** `e2ee`: FrameTransforms (e2ee/transforms.js) in an end-to-end encrypted room, else null:
   *  then every sender and receiver of both connections goes through the E2EE worker. */
  constructor({ send, iceServers = [], selfSid, permissions = [], PeerConnection = globalThis.RTCPeerConnection, e2ee = null }) {
    super();
    this._e2ee = e2ee;
    this._targets = new WeakMap(); // RTCRtpReceiver → the sender sid its decryption was told
    this._send = send;
    this._iceServers = iceServers;
    this._PeerConnection = PeerConnection;
    this.selfSid = selfSid;
    this._permissions = new Set(permissions);
    this.status = "connecting";
    this.remote = new Map(); // track id -> {id, sid, identity, kind, source, layers, muted}
    this.ownTracks = new Map(); // source -> track id the server gave this client's own track
    this.speakers = [];
    this.publisher = null;
    this.subscriber = null;
    this.planner = new SubscriptionPlanner((msg) => this._send(msg));
    this._local = new Map(); // source -> MediaStreamTrack | null
  }

  get available() {
    return !["unavailable", "unsupported", "closed"].includes(this.status);
  }

  /** Starts with the local tracks to publish ({camera, microphone}: track or null). */
  start(localTracks = {}) {
    if (typeof this._PeerConnection !== "function") {
      this._setStatus("unsupported");
      return;
    }
    if (this._permissions.has("subscribe")) {
      this.subscriber = new Subscriber({ iceServers: this._iceServers, send: this._send, PeerConnection: this._PeerConnection, e2ee: this._e2ee });
      this.subscriber.addEventListener("change", () => this._emit("tracks"));
      this.subscriber.addEventListener("state", () => this._updateStatus());
      this.subscriber.addEventListener("error", (ev) => this._warn("subscribe_failed", String(ev.detail.error)));
    }
    // Ask for nothing yet: this also tells us at once whether the server has media at all.
    this._send({ type: "update_subscription", tracks: [] });
    for (const [source, track] of Object.entries(localTracks)) {
      if (track) this.setLocalTrack(source, track);
    }
  }

  _ensurePublisher() {
    if (this.publisher || !this.available) return this.publisher;
    this.publisher = new Publisher({ iceServers: this._iceServers, send: this._send, PeerConnection: this._PeerConnection, e2ee: this._e2ee });
    this.publisher.addEventListener("state", () => this._updateStatus());
    this.publisher.addEventListener("error", (ev) => {
      if (this.available) this._warn("publish_failed", String(ev.detail.error && ev.detail.error.message));
    });
    return this.publisher;
  }

  /** Publishes (or stops) a local source. Permission is checked by the server too. */
  async setLocalTrack(source, track) {
    this._local.set(source, track);
    if (!this.available) return;
    const perm = source === "microphone" ? "publish_audio" : source === "camera" ? "publish_video" : "publish_screen";
    if (track && !this._permissions.has(perm)) return;
    const pub = track ? this._ensurePublisher() : this.publisher;
    if (!pub) return;
    if (!track && (source === "screen" || source === "screen_audio") && this.ownTracks.has(source)) {
      this._send({ type: "unpublish", track: this.ownTracks.get(source) });
      this.ownTracks.delete(source);
    }
    await pub.setTrack(source, track);
  }

  /** Fresh TURN credentials from the server: later ICE restarts and relays use them. */
  setIceServers(iceServers) {
    if (!Array.isArray(iceServers)) return;
    this._iceServers = iceServers;
    for (const side of [this.publisher, this.subscriber]) {
      const pc = side && side.pc;
      if (!pc || pc.signalingState === "closed" || typeof pc.setConfiguration !== "function") continue;
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers });
      } catch (err) {
        this._warn("ice_servers_refused", String(err));
      }
    }
  }

  // --- server messages ----------------------------------------------------------------------

  handle(msg) {
    if (this.status === "closed") return;
    switch (msg.type) {
      case "error":
        return this._onError(msg);
      case "publish_answer":
        if (this.publisher) this.publisher.handleAnswer(msg.sdp);
        return undefined;
      case "publish_layers":
        if (this.publisher) this.publisher.setActiveLayers(msg.mid, msg.layers);
        return undefined;
      case "subscribe_offer":
        if (this.subscriber) this.subscriber.handleOffer(msg.sdp);
        return undefined;
      case "ice_candidate": {
        const pc = msg.target === "publish" ? this.publisher : this.subscriber;
        if (pc) pc.addRemoteCandidate(msg.candidate);
        return undefined;
      }
      case "track_published":
        return this._onTrackPublished(msg.track);
      case "track_unpublished":
        if (this.remote.delete(msg.id)) this._emit("tracks");
        for (const [source, id] of this.ownTracks) if (id === msg.id) this.ownTracks.delete(source);
        return undefined;
      case "track_muted": {
        const t = this.remote.get(msg.id);
        if (t) {
          t.muted = !!msg.muted;
          this._emit("tracks");
        }
        return undefined;
      }
      case "track_map":
        if (this.subscriber) this.subscriber.setTrackMap(msg.mids);
        return undefined;
      case "speakers":
        this.speakers = Array.isArray(msg.speakers) ? msg.speakers : [];
        return this._emit("speakers", { speakers: this.speakers });
      case "ice_servers":
        return this.setIceServers(msg.ice_servers);
      case "media_reset":
        return this.reset();
      default:
        return undefined;
    }
  }

  _onTrackPublished(track) {
    if (!track || typeof track.id !== "string") return;
    if (track.sid === this.selfSid) {
      this.ownTracks.set(track.source, track.id);
      return;
    }
    this.remote.set(track.id, { ...track, muted: !!track.muted, layers: Array.isArray(track.layers) ? track.layers : [] });
    this._emit("tracks");
  }

  _onError(msg) {
    if (msg.code === "media_unavailable") {
      this._shutdown("unavailable");
      return;
    }
    if (msg.ref === "publish_offer" && this.publisher) this.publisher.refuse(new Error(msg.message || msg.code));
    this._warn(msg.code, msg.message);
  }

  // --- what the UI asks ---------------------------------------------------------------------

  /** The remote publication of a participant's source, or null. */
  publication(sid, source) {
    for (const t of this.remote.values()) if (t.sid === sid && t.source === source) return t;
    return null;
  }

  /** The MediaStreamTrack receiving remote track `trackId`, when the server forwards it. */
  receivedTrack(trackId) {
    return this.subscriber ? this.subscriber.trackFor(trackId) : null;
  }

  audioTracks() {
    return this.subscriber ? this.subscriber.audioTracks() : [];
  }

  /** The tiles on screen: [{sid, source, width, height}] in device pixels. */
  setVisible(tiles) {
    if (!this.available) return;
    const list = [];
    for (const tile of tiles) {
      const pub = this.publication(tile.sid, tile.source);
      if (pub && pub.kind !== "audio" && !pub.muted) list.push({ trackId: pub.id, width: tile.width, height: tile.height });
    }
    this.planner.setVisible(list);
  }

  setPaused(paused) {
    if (this.available) this.planner.setPaused(paused);
  }

  /** Peer connections for statistics. */
  peerConnections() {
    return [this.publisher, this.subscriber].filter((p) => p && !p.closed).map((p) => p.pc);
  }

  close() {
    this._shutdown("closed");
  }

  /** `media_reset`: the server's media side for this session is new (its media worker stopped).
   *  Both connections are closed and the remote tracks forgotten; the same local tracks are
   *  published again and the subscribe connection comes anew. The meeting is not touched. */
  reset() {
    if (this.status === "closed" || this.status === "unsupported") return;
    this.planner.close();
    if (this.publisher) this.publisher.close();
    if (this.subscriber) this.subscriber.close();
    this.publisher = null;
    this.subscriber = null;
    this.remote.clear();
    this.ownTracks.clear();
    this.speakers = [];
    this.planner = new SubscriptionPlanner((msg) => this._send(msg));
    this._setStatus("connecting");
    this._emit("tracks");
    this.start(Object.fromEntries(this._local));
  }

  // --- internals ----------------------------------------------------------------------------

  _shutdown(status) {
    if (this.status === "closed" || this.status === status) return;
    this.planner.close();
    if (this.publisher) this.publisher.close();
    if (this.subscriber) this.subscriber.close();
    this.publisher = null;
    this.subscriber = null;
    this.remote.clear();
    this._setStatus(status);
    this._emit("tracks");
  }

  _updateStatus() {
    if (!this.available) return;
    const states = [this.publisher, this.subscriber].filter(Boolean).map((p) => p.connectionState);
    if (states.includes("connected")) this._setStatus("connected");
    else if (states.length && states.every((s) => s === "failed" || s === "closed")) this._setStatus("failed");
    else this._setStatus("connecting");
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this._emit("status", { status });
  }

  _warn(code, message) {
    this._emit("warning", { code, message });
  }

  /** Points each receiver's decryption at the publisher whose track it carries now. */
  _retarget() {
    if (!this._e2ee || !this.subscriber) return;
    for (const { receiver, trackId } of this.subscriber.receivers()) {
      const pub = trackId ? this.remote.get(trackId) : null;
      if (!pub || this._targets.get(receiver) === pub.sid) continue;
      this._targets.set(receiver, pub.sid);
      this._e2ee.retarget(receiver, pub.sid);
    }
  }

  _emit(type, detail) {
    if (type === "tracks") this._retarget();
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
