// One joined session's end-to-end encryption: glues the key manager, the signaling and the
// transform worker together and keeps what the UI shows (safety code, who is verified, whose
// frames decrypt). No DOM and no WebRTC here: the worker, the clock and the crypto are passed in.
//
// A session is made after every `joined` (a reconnect is a new session: a new identity key and new
// media keys). Feed it the meeting's events:
//   start(participants)   after joined: makes the identity key, announces it, starts the keys
//   handle(message)       e2ee_identity, e2ee_key (and the e2ee errors); true if it was one
//   joined(p) / updated(p) / left(sid)    participant_joined / participant_updated / participant_left
//
// Events: "safety" {code}  the safety code changed (code: {digits, emoji, text} or null)
//         "status" {sender} whether `sender`'s frames decrypt changed (see senderState)
//         "log"    {message} something worth a console line (a refused key, a bad blob)
//         "failed" {error}  the session could not start (no WebCrypto): leave the meeting

import { KeyManager, generateIdentity as makeIdentity } from "./keys.js";
import { safetyCode as computeSafetyCode } from "./safety.js";

export class E2eeSession extends EventTarget {
  constructor({
    self,
    send,
    worker,
    now = () => Date.now(),
    crypto = globalThis.crypto,
    generateIdentity = () => makeIdentity(crypto),
    safetyCode = (entries) => computeSafetyCode(entries, crypto),
    setTimer = (fn, ms) => setTimeout(fn, ms),
    clearTimer = (t) => clearTimeout(t),
    verified = new Map(),
    managerOptions = {},
  }) {
    super();
    this.self = { sid: self.sid, identity: self.identity };
    this._send = send;
    this.worker = worker;
    this._now = now;
    this._crypto = crypto;
    this._generateIdentity = generateIdentity;
    this._safetyCode = safetyCode;
    this._setTimer = setTimer;
    this._clearTimer = clearTimer;
    this._managerOptions = managerOptions;
    this.manager = null;
    this.publicKey = null;
    this.keys = new Map(); // sid → {identity, key}: everybody's announced public key but ours
    /** identity → the public key it had when it was marked verified (kept across reconnects) */
    this.verified = verified;
    this.states = new Map(); // sender sid → worker status state
    this.code = null;
    this.closed = false;
    this._timer = null;
    this._chain = Promise.resolve();
    this._onWorker = (ev) => this._workerMessage(ev.data);
    worker.addEventListener("message", this._onWorker);
  }

  /** Runs `work` after everything before it; errors are logged, never thrown at the caller. */
  _queue(work) {
    this._chain = this._chain.then(async () => {
      if (this.closed) return;
      await work();
    });
    this._chain = this._chain.catch((error) => this._emit("log", { message: `e2ee: ${error && error.message}` }));
    return this._chain;
  }

  /** `participants`: the others of `joined.participants` ({sid, identity, e2ee_key?}). */
  start(participants = []) {
    return this._queue(async () => {
      let identityKeys;
      try {
        identityKeys = await this._generateIdentity();
      } catch (error) {
        this._emit("failed", { error });
        return;
      }
      this.publicKey = identityKeys.publicKey;
      this._send({ type: "e2ee_identity", key: identityKeys.publicKey });
      this.manager = new KeyManager({ ...this.self, identityKeys }, { now: this._now, crypto: this._crypto, options: this._managerOptions });
      await this._run(await this.manager.start());
      const list = [];
      for (const p of participants) {
        if (!p || typeof p.sid !== "string" || p.sid === this.self.sid) continue;
        await this._run(await this.manager.onJoin(p.sid, p.identity));
        if (typeof p.e2ee_key === "string") {
          list.push({ sid: p.sid, identity: p.identity, key: p.e2ee_key });
          this.keys.set(p.sid, { identity: p.identity, key: p.e2ee_key });
        }
      }
      await this._run(await this.manager.onParticipants(list));
      await this._updateSafety();
    });
  }

  /** A signaling message; true when it belongs to E2EE. */
  handle(msg) {
    if (!msg) return false;
    if (msg.type === "e2ee_identity") {
      this._learn(msg.sid, msg.identity, msg.key);
      return true;
    }
    if (msg.type === "e2ee_key") {
      this._queue(async () => this._run(await this.manager.onKeyMessage(msg.from, msg.data)));
      return true;
    }
    return false;
  }

  joined(p) {
    if (!p || p.sid === this.self.sid) return;
    // the same person on a new connection: the old session is gone (its leave may not come)
    for (const [sid, known] of this.keys) if (known.identity === p.identity && sid !== p.sid) this.left(sid);
    this._queue(async () => this._run(await this.manager.onJoin(p.sid, p.identity)));
    if (typeof p.e2ee_key === "string") this._learn(p.sid, p.identity, p.e2ee_key);
  }

  updated(p) {
    if (p && typeof p.e2ee_key === "string") this._learn(p.sid, p.identity, p.e2ee_key);
  }

  left(sid) {
    this._queue(async () => {
      this.keys.delete(sid);
      this.states.delete(sid);
      await this._run(await this.manager.onLeave(sid));
      await this._updateSafety();
    });
  }

  _learn(sid, identity, key) {
    if (typeof sid !== "string" || sid === this.self.sid || typeof key !== "string") return;
    this._queue(async () => {
      const known = this.keys.get(sid);
      if (known && known.key === key) return;
      this.keys.set(sid, { identity: String(identity ?? ""), key });
      await this._run(await this.manager.onIdentity(sid, identity, key));
      await this._updateSafety();
    });
  }

  // --- what the UI asks ---------------------------------------------------------------------

  /** "ok" once `sender`'s frames decrypt, "waiting" before (or when its keys are missing). */
  senderState(sid) {
    return this.states.get(sid) === "ok" ? "ok" : "waiting";
  }

  /** Marks (or unmarks) that this user compared the safety code with `identity` aloud. */
  setVerified(identity, on) {
    const entry = [...this.keys.values()].find((k) => k.identity === identity);
    if (on && entry) this.verified.set(identity, entry.key);
    else this.verified.delete(identity);
    this._emit("safety", { code: this.code });
  }

  /** Verified while the participant still has the public key it had when it was verified. */
  isVerified(identity) {
    const key = this.verified.get(identity);
    return key !== undefined && [...this.keys.values()].some((k) => k.identity === identity && k.key === key);
  }

  /** Asks the worker for its frame counters; resolves to {encrypt, decrypt} ({frames, dropped, ms}). */
  workerStats() {
    return new Promise((resolve) => {
      const listener = (ev) => {
        if (ev.data?.type !== "stats") return;
        this.worker.removeEventListener("message", listener);
        resolve({ encrypt: ev.data.encrypt, decrypt: ev.data.decrypt });
      };
      this.worker.addEventListener("message", listener);
      this.worker.postMessage({ type: "stats" });
    });
  }

  close() {
    this.closed = true;
    if (this._timer !== null) this._clearTimer(this._timer);
    this._timer = null;
    this.worker.removeEventListener("message", this._onWorker);
  }

  // --- internals ----------------------------------------------------------------------------

  async _run(actions) {
    for (const action of actions) {
      if (action.type === "send") this._send(action.message);
      else if (action.type === "keyError") this._emit("log", { message: `e2ee key from ${action.from}: ${action.reason}` });
      else this.worker.postMessage(action);
    }
    this._schedule();
  }

  _schedule() {
    if (this._timer !== null) this._clearTimer(this._timer);
    this._timer = null;
    const due = this.manager ? this.manager.nextDeadline() : null;
    if (due === null || this.closed) return;
    this._timer = this._setTimer(() => {
      this._timer = null;
      this._queue(async () => this._run(await this.manager.tick()));
    }, Math.max(0, due - this._now()));
  }

  async _updateSafety() {
    if (!this.manager) return;
    const code = await this._safetyCode(this.manager.safetyEntries());
    if (this.code && code && this.code.text === code.text) return;
    this.code = code;
    this._emit("safety", { code });
  }

  _workerMessage(msg) {
    if (msg?.type === "status" && typeof msg.sender === "string") {
      if (this.states.get(msg.sender) === msg.state) return;
      this.states.set(msg.sender, msg.state);
      this._emit("status", { sender: msg.sender });
    } else if (msg?.type === "keyResult" && (msg.result === "conflict" || msg.result === "refused")) {
      this._emit("log", { message: `e2ee ${msg.op} ${msg.sender ?? "self"} ${msg.kid}: ${msg.result}` });
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
