// A meeting as this client sees it: joining, the room and its participants, chat, moderation and
// automatic rejoin after a network blip. No DOM code here: the UI listens to the events below.
//
// Events (CustomEvent, details in brackets):
//   status        {status: "connecting" | "waiting" | "joined" | "reconnecting" | "password" | "ended", attempt}
//   lobby         {moderators}                  waiting for a moderator to let this participant in
//   lobby-updated {waiting}                     (moderators) who is waiting, oldest first
//   password-needed {wrong}                     the room needs a password (again, after a wrong one)
//   joined        {rejoin}                      the room, self and participants are (re)loaded
//   participant-joined  {participant, returning}
//   participant-updated {participant, previous}
//   participant-left    {participant, reason}
//   self-updated  {participant, previous}
//   chat          {message}
//   room          {room, previous}
//   muted-by      {kind, by}                    a moderator muted this participant
//   unmute-requested {kind, by}
//   media         {message}                     media messages and errors, for media.js
//   e2ee          {message}                     e2ee_identity, e2ee_key and errors of e2ee requests
//   error         {code, message, ref}          a refused request (not join, not media)
//   rtt           {ms}
//   ended         {kind, code?, reason?, by?, message?}
//       kind: "left" | "refused" | "kicked" | "room_closed" | "connection_lost" | "unreachable"

import { CLOSE, MEDIA_MESSAGE_TYPES, MEDIA_REQUEST_TYPES, PROTOCOL_VERSION, Signaling } from "./protocol.js";

export const RECONNECT_DELAYS_MS = [300, 1000, 2000, 4000, 8000];
const RECONNECT_GIVE_UP_MS = 120_000;
const FIRST_CONNECT_ATTEMPTS = 4;
const PING_INTERVAL_MS = 4000;
const DEAD_AFTER_MS = 12_000;
const MAX_CHAT_KEPT = 500;
const LEAVE_TIMEOUT_MS = 2000;

export class Meeting extends EventTarget {
  constructor({ url, room, token, makeSignaling = (u) => new Signaling(u), now = () => Date.now() }) {
    super();
    this.url = url;
    this.roomName = room;
    this._token = token;
    this._makeSignaling = makeSignaling;
    this._now = now;
    this.status = "idle";
    this.self = null;
    this.participants = new Map(); // sid -> Participant (the others)
    this.room = null;
    this.iceServers = [];
    this.tokenExpiresAt = null;
    this.chat = [];
    this.localState = { audio_muted: true, video_muted: true, hand_raised: false };
    this.password = null;
    this.lobby = null; // {moderators} while waiting
    this.waiting = []; // (moderators) who waits in the lobby
    this.nameOverride = null;
    this.endReason = null;
    this.rttMs = null;
    this.joinCount = 0;
    this._sig = null;
    this._attempt = 0;
    this._lostSince = null;
    this._lastHeard = 0;
    this._pingTimer = null;
    this._retryTimer = null;
    this._leaving = false;
    this._replaced = new Set(); // identities whose session was just replaced (a rejoin, not a new face)
  }

  // --- lifecycle ----------------------------------------------------------------------------

  /** Joins with the initial state ({audio_muted, video_muted, hand_raised}) and, when the token
   *  allows renaming, a display name differing from the token's. */
  start({ state, name = null } = {}) {
    Object.assign(this.localState, state || {});
    this.nameOverride = name;
    this.endReason = null;
    this._attempt = 0;
    this._lostSince = null;
    this._connect("connecting");
  }

  /** Rejoin after the meeting ended for this client (leave, lost connection): same token. */
  rejoin() {
    this.start({ state: this.localState, name: this.nameOverride });
  }

  /** Joins again with the room password (after `password-needed`). */
  submitPassword(password) {
    this.password = password;
    this._attempt = 0;
    this._connect("connecting");
  }

  leave() {
    if (this.status === "ended") return;
    this._leaving = true;
    if (this._sig && this._sig.isOpen && (this.status === "joined" || this.status === "waiting")) {
      this._sig.send({ type: "leave" });
      setTimeout(() => this._end({ kind: "left" }), LEAVE_TIMEOUT_MS);
    } else {
      this._end({ kind: "left" });
    }
  }

  /** Leaves at once for a reason of this client's (it cannot take part): `ended` gets `reason`. */
  quit(reason) {
    if (this.status === "ended") return;
    if (this._sig && this._sig.isOpen) this._sig.send({ type: "leave" });
    this._leaving = true;
    this._end(reason);
  }

  /** The browser reports the network gone: the connection cannot be trusted any more. */
  networkLost() {
    if (this.status === "joined") this._connectionLooksDead();
  }

  /** Reconnect now instead of waiting for the next attempt (the browser came back online). */
  nudge() {
    if (this.status !== "reconnecting" || !this._retryTimer) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._connect("reconnecting");
  }

  _connect(status) {
    this._setStatus(status);
    this._leaving = false;
    const sig = this._makeSignaling(this.url);
    this._sig = sig;
    sig.addEventListener("open", () => {
      const join = { type: "join", v: PROTOCOL_VERSION, token: this._token, room: this.roomName, state: { ...this.localState } };
      if (this.nameOverride) join.name = this.nameOverride;
      if (this.password) join.password = this.password;
      sig.send(join);
    });
    sig.addEventListener("message", (ev) => {
      if (sig === this._sig) this._onMessage(ev.detail);
    });
    sig.addEventListener("close", (ev) => {
      if (sig === this._sig) this._onClose(ev.detail);
    });
    this._lastHeard = this._now();
    sig.connect();
  }

  _setStatus(status) {
    this.status = status;
    this._emit("status", { status, attempt: this._attempt });
  }

  _end(reason) {
    if (this.status === "ended") return;
    this._stopPings();
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const sig = this._sig;
    this._sig = null;
    if (sig) sig.abandon();
    this.endReason = reason;
    this._setStatus("ended");
    this._emit("ended", reason);
  }

  _onClose({ code }) {
    this._stopPings();
    if (this.status === "ended") return;
    if (this._leaving) {
      this._end({ kind: "left" });
      return;
    }
    if (this.status === "password") return; // the join is asked again, with a password
    if (code === CLOSE.REMOVED) {
      this._end({ kind: "kicked", reason: "removed" });
      return;
    }
    if (code === CLOSE.ROOM_CLOSED) {
      this._end({ kind: "room_closed", reason: "deleted" });
      return;
    }
    if (code === CLOSE.JOIN_REFUSED) {
      this._end({ kind: "refused", code: "unknown" });
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    const now = this._now();
    if (this.joinCount === 0) {
      if (this._attempt >= FIRST_CONNECT_ATTEMPTS) {
        this._end({ kind: "unreachable" });
        return;
      }
    } else {
      if (this._lostSince === null) this._lostSince = now;
      if (now - this._lostSince > RECONNECT_GIVE_UP_MS) {
        this._end({ kind: "connection_lost" });
        return;
      }
    }
    const base = RECONNECT_DELAYS_MS[Math.min(this._attempt, RECONNECT_DELAYS_MS.length - 1)];
    const delay = base * (0.8 + Math.random() * 0.4);
    this._attempt += 1;
    this._setStatus(this.joinCount === 0 ? "connecting" : "reconnecting");
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._connect(this.status);
    }, delay);
  }

  /** The server ended this session without a reason of the meeting's (it is shutting down, or
   *  its side of the connection failed): rejoin, on a new connection, as after a network blip. */
  _onBye() {
    if (this._leaving) {
      this._end({ kind: "left" });
      return;
    }
    this._connectionLooksDead();
  }

  /** The connection went quiet: drop it and reconnect without waiting for TCP to notice. */
  _connectionLooksDead() {
    const sig = this._sig;
    if (sig) sig.abandon();
    this._stopPings();
    this._scheduleReconnect();
  }

  _startPings() {
    this._stopPings();
    this._lastHeard = this._now();
    if (this._sig) this._sig.send({ type: "ping", t: this._now() }); // a first round-trip time at once
    this._pingTimer = setInterval(() => {
      if (!this._sig) return;
      if (this._now() - this._lastHeard > DEAD_AFTER_MS) {
        this._connectionLooksDead();
        return;
      }
      this._sig.send({ type: "ping", t: this._now() });
    }, PING_INTERVAL_MS);
  }

  _stopPings() {
    if (this._pingTimer) clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  // --- incoming -----------------------------------------------------------------------------

  _onMessage(msg) {
    this._lastHeard = this._now();
    if (MEDIA_MESSAGE_TYPES.has(msg.type)) {
      this._emit("media", { message: msg });
      return;
    }
    switch (msg.type) {
      case "joined":
        return this._onJoined(msg);
      case "lobby":
      case "lobby_status":
        return this._onLobby(msg);
      case "lobby_updated":
        this.waiting = Array.isArray(msg.waiting) ? msg.waiting : [];
        return this._emit("lobby-updated", { waiting: this.waiting });
      case "participant_joined":
        return this._onParticipantJoined(msg.participant);
      case "participant_updated":
        return this._onParticipantUpdated(msg.participant);
      case "participant_left":
        return this._onParticipantLeft(msg);
      case "chat":
        this.chat.push(msg);
        if (this.chat.length > MAX_CHAT_KEPT) this.chat.shift();
        return this._emit("chat", { message: msg });
      case "muted": {
        const key = msg.kind === "video" ? "video_muted" : "audio_muted";
        this.localState[key] = true;
        return this._emit("muted-by", { kind: msg.kind, by: msg.by });
      }
      case "unmute_requested":
        return this._emit("unmute-requested", { kind: msg.kind, by: msg.by });
      case "room_updated": {
        const previous = this.room;
        this.room = msg.room;
        return this._emit("room", { room: msg.room, previous });
      }
      case "kicked":
        return this._end({ kind: "kicked", reason: msg.reason, message: msg.message, by: msg.by || null });
      case "room_closed":
        return this._end({ kind: "room_closed", reason: msg.reason });
      case "left":
        return this._end({ kind: "left" });
      case "bye":
        return this._onBye();
      case "e2ee_identity":
      case "e2ee_key":
        return this._emit("e2ee", { message: msg });
      case "pong":
        if (typeof msg.t === "number") {
          this.rttMs = Math.max(0, this._now() - msg.t);
          this._emit("rtt", { ms: this.rttMs });
        }
        return undefined;
      case "error":
        return this._onError(msg);
      default:
        return undefined;
    }
  }

  _onLobby(msg) {
    this.lobby = { moderators: Number(msg.moderators) || 0 };
    if (msg.type === "lobby") {
      this._attempt = 0;
      this._setStatus("waiting");
      this._startPings();
    }
    if (msg.self && typeof msg.self.name === "string") this.lobby.name = msg.self.name;
    else if (this._lobbyName) this.lobby.name = this._lobbyName;
    this._lobbyName = this.lobby.name || null;
    this._emit("lobby", { moderators: this.lobby.moderators, name: this.lobby.name || "" });
  }

  _onJoined(msg) {
    this.lobby = null;
    this.joinCount += 1;
    this._attempt = 0;
    this._lostSince = null;
    this.self = msg.self;
    this.room = msg.room;
    this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    this.tokenExpiresAt = msg.token_expires_at ?? null;
    this.participants = new Map();
    for (const p of msg.participants || []) this.participants.set(p.sid, p);
    Object.assign(this.localState, pickState(msg.self.state));
    this._setStatus("joined");
    this._startPings();
    this._emit("joined", { rejoin: this.joinCount > 1 });
  }

  _onParticipantJoined(p) {
    if (!p || (this.self && p.sid === this.self.sid)) return;
    for (const [sid, other] of this.participants) {
      if (other.identity === p.identity) this.participants.delete(sid);
    }
    const returning = this._replaced.delete(p.identity);
    this.participants.set(p.sid, p);
    this._emit("participant-joined", { participant: p, returning });
  }

  _onParticipantUpdated(p) {
    if (!p) return;
    if (this.self && p.sid === this.self.sid) {
      const previous = this.self;
      this.self = p;
      Object.assign(this.localState, pickState(p.state));
      this._emit("self-updated", { participant: p, previous });
      return;
    }
    const previous = this.participants.get(p.sid) || null;
    this.participants.set(p.sid, p);
    this._emit("participant-updated", { participant: p, previous });
  }

  _onParticipantLeft(msg) {
    const p = this.participants.get(msg.sid);
    if (!p) return;
    this.participants.delete(msg.sid);
    if (msg.reason === "replaced") {
      this._replaced.add(p.identity);
      setTimeout(() => this._replaced.delete(p.identity), 10_000);
    }
    this._emit("participant-left", { participant: p, reason: msg.reason });
  }

  _onError(msg) {
    if (msg.ref === "join" && (msg.code === "password_required" || msg.code === "bad_password")) {
      this._stopPings();
      this._setStatus("password");
      this._emit("password-needed", { wrong: msg.code === "bad_password" });
    } else if (msg.ref === "join" && msg.code === "try_again") {
      // the meeting is moving between servers: the close (1013) that follows reconnects
    } else if (msg.ref === "join") {
      this._end({ kind: "refused", code: msg.code, reason: msg.reason, message: msg.message });
    } else if (msg.ref === "e2ee_keys" || msg.ref === "e2ee_identity") {
      this._emit("e2ee", { message: msg }); // a key for someone who just left: not the user's business
    } else if (MEDIA_REQUEST_TYPES.has(msg.ref) || msg.code === "media_unavailable") {
      this._emit("media", { message: msg });
    } else {
      this._emit("error", { code: msg.code, message: msg.message, ref: msg.ref });
    }
  }

  // --- outgoing -----------------------------------------------------------------------------

  get joined() {
    return this.status === "joined";
  }

  get isModerator() {
    return !!this.self && this.self.permissions.includes("moderate");
  }

  can(permission) {
    return !!this.self && this.self.permissions.includes(permission);
  }

  /** Everyone in the room, this participant first, then by arrival. */
  everyone() {
    const others = [...this.participants.values()].sort(
      (a, b) => a.joined_at - b.joined_at || a.name.localeCompare(b.name) || a.sid.localeCompare(b.sid),
    );
    return this.self ? [this.self, ...others] : others;
  }

  byIdentity(identity) {
    if (this.self && this.self.identity === identity) return this.self;
    for (const p of this.participants.values()) if (p.identity === identity) return p;
    return null;
  }

  _send(msg) {
    return this.joined && !!this._sig && this._sig.send(msg);
  }

  /** Changes this participant's state ({audio_muted, video_muted, hand_raised}); others see it. */
  setLocalState(partial) {
    Object.assign(this.localState, partial);
    this._send({ type: "update", state: { ...partial } });
  }

  sendChat(text, to = null) {
    return this._send(to ? { type: "chat", text, to } : { type: "chat", text });
  }

  mute(identity, kind = "audio") {
    return this._send({ type: "mute", identity, kind, muted: true });
  }

  askToUnmute(identity, kind = "audio") {
    return this._send({ type: "mute", identity, kind, muted: false });
  }

  /** Mutes every other participant whose microphone is on; returns how many were asked. */
  muteAll() {
    let n = 0;
    for (const p of this.participants.values()) {
      if (!p.state.audio_muted) {
        this.mute(p.identity, "audio");
        n += 1;
      }
    }
    return n;
  }

  admit(identity) {
    return this._send({ type: "admit", identity });
  }

  deny(identity) {
    return this._send({ type: "deny", identity });
  }

  kick(identity) {
    return this._send({ type: "kick", identity });
  }

  setLocked(locked) {
    return this._send({ type: "lock_room", locked });
  }

  endForAll() {
    return this._send({ type: "end_room" });
  }

  sendMedia(msg) {
    return this._send(msg);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function pickState(state) {
  const out = {};
  for (const key of ["audio_muted", "video_muted", "hand_raised"]) {
    if (state && typeof state[key] === "boolean") out[key] = state[key];
  }
  return out;
}
