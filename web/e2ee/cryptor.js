// The frame cryptor the transform worker runs: one send key with its counter, every sender's
// receive keys (bounded), ratchet-on-demand, retirement of old keys and throttled status events.
// No worker or WebRTC API here, so it runs in Node's tests as it runs in the worker.
//
// Receive keys per sender are keyed by KID (epoch × 256 + step, keys.js). A frame whose KID is a
// later step of an epoch this side holds is opened with a key ratcheted on demand (at most
// maxRatchetAhead steps); the ratcheted key is kept only when the frame authenticates. When a newer
// KID of a sender opens a frame, that sender's older keys stay retireAfterMs for frames in flight.

import { encryptFrame, openEncryptedFrame, readEncryptedFrame } from "./frame.js";
import { ratchetSecret, splitKid } from "./keys.js";
import { importSFrameKey } from "./sframe.js";

export const CRYPTOR_DEFAULTS = Object.freeze({
  retireAfterMs: 4000,
  maxSenders: 128,
  maxKeysPerSender: 4,
  maxRatchetAhead: 64,
  statusIntervalMs: 1000,
});

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export class FrameCryptor {
  constructor({ now = () => Date.now(), ...options } = {}) {
    this.now = now;
    this.options = { ...CRYPTOR_DEFAULTS, ...options };
    this.sendKey = null; // {kid, secret, context}
    this.sendCounter = 0n;
    /** sender → {keys: Map<kid, {kid, epoch, step, secret, context, retireAt}>, current} */
    this.senders = new Map();
    /** sender (null: this side's sending) → {state, kid, reported, reportedAt} */
    this.status = new Map();
    this.dirty = new Set();
  }

  /** Encrypt with this key from now on. "ok", "same" (already in use) or "refused" (not newer). */
  async setSendKey(kid, secret) {
    if (splitKid(kid) === null) return "refused";
    if (this.sendKey && this.sendKey.kid === kid) return sameBytes(this.sendKey.secret, secret) ? "same" : "refused";
    if (this.sendKey && kid < this.sendKey.kid) return "refused";
    const context = await importSFrameKey(secret, kid);
    this.sendKey = { kid, secret: Uint8Array.from(secret), context };
    this.sendCounter = 0n;
    return "ok";
  }

  /** A sender's key: "installed", "duplicate", "conflict" (that KID has another key) or "refused". */
  async setReceiveKey(sender, kid, secret) {
    const parts = splitKid(kid);
    if (parts === null || typeof sender !== "string") return "refused";
    let ring = this.senders.get(sender);
    if (!ring) {
      if (this.senders.size >= this.options.maxSenders) return "refused";
      ring = { keys: new Map(), current: -1 };
      this.senders.set(sender, ring);
    }
    const known = ring.keys.get(kid);
    if (known) return sameBytes(known.secret, secret) ? "duplicate" : "conflict";
    const context = await importSFrameKey(secret, kid);
    const retireAt = kid < ring.current ? this.now() + this.options.retireAfterMs : null;
    ring.keys.set(kid, { kid, ...parts, secret: Uint8Array.from(secret), context, retireAt });
    this.prune(ring);
    return "installed";
  }

  removeSender(sender) {
    this.senders.delete(sender);
    this.status.delete(sender);
    this.dirty.delete(sender);
  }

  /** `{ok: true, data}` or `{ok: false, reason: "no_send_key" | "unsupported_codec" | "bad_frame"}`. */
  async encrypt(codec, data) {
    if (data.length === 0) return { ok: true, data };
    const key = this.sendKey;
    if (!key) {
      this.note(null, "no_send_key");
      return { ok: false, reason: "no_send_key" };
    }
    const ctr = this.sendCounter;
    this.sendCounter += 1n;
    const sealed = await encryptFrame(codec, data, key.context, ctr);
    this.note(null, sealed.ok ? "ok" : sealed.reason, key.kid);
    return sealed;
  }

  /**
   * `{status: "ok", data, kid}` or `{status: "missing_key" | "bad_frame" | "unsupported_codec"}`.
   * Only "ok" gives bytes for the decoder; drop the frame otherwise.
   */
  async decrypt(sender, codec, data) {
    if (data.length === 0) return { status: "ok", data, kid: null };
    const result = await this.open(sender, codec, data);
    this.note(sender, result.status, result.kid);
    return result;
  }

  /**
   * For a stream that carries several senders in turn (an audio slot follows the loudest): tries
   * the `hints` first (the sender it carried last, the one the server says it carries), then every
   * other sender holding the frame's KID or a key of its epoch, until the AEAD tag verifies.
   * `{status, data, kid, sender}`; sender is the one that opened it, or the first hint.
   */
  async decryptAny(hints, codec, data) {
    const first = hints.find((s) => typeof s === "string" && s !== "") ?? null;
    if (data.length === 0) return { status: "ok", data, kid: null, sender: first };
    const read = readEncryptedFrame(codec, data);
    let failed = read.error ? { status: read.error } : { status: "missing_key", kid: Number(read.header.kid) };
    if (!read.error) {
      const tried = new Set();
      const candidates = [...hints, ...this.candidatesFor(read.header.kid)];
      for (const sender of candidates) {
        if (typeof sender !== "string" || tried.has(sender) || !this.senders.has(sender)) continue;
        tried.add(sender);
        const result = await this.openRead(sender, read);
        if (result.status === "ok") {
          this.note(sender, "ok", result.kid);
          return { ...result, sender };
        }
        if (failed.status === "missing_key") failed = result;
      }
    }
    if (first !== null) this.note(first, failed.status, failed.kid);
    return { ...failed, sender: first };
  }

  /** Senders that could open a frame under `kid`: they hold it, or an earlier step of its epoch. */
  candidatesFor(kidValue) {
    const parts = splitKid(kidValue);
    if (parts === null) return [];
    const kid = Number(kidValue);
    const out = [];
    for (const [sender, ring] of this.senders) {
      if (ring.keys.has(kid)) out.unshift(sender);
      else if ([...ring.keys.values()].some((k) => k.epoch === parts.epoch && k.step < parts.step)) out.push(sender);
    }
    return out;
  }

  async open(sender, codec, data) {
    const read = readEncryptedFrame(codec, data);
    if (read.error) return { status: read.error };
    return this.openRead(sender, read);
  }

  async openRead(sender, read) {
    const parts = splitKid(read.header.kid);
    if (parts === null) return { status: "bad_frame" };
    const kid = Number(read.header.kid);
    const ring = this.senders.get(sender);
    if (!ring) return { status: "missing_key", kid };
    const now = this.now();
    this.prune(ring);
    const known = ring.keys.get(kid);
    if (known) {
      if (known.retireAt !== null && known.retireAt <= now) return { status: "missing_key", kid };
      const plain = await openEncryptedFrame(read, known.context);
      if (plain === null) return { status: "bad_frame", kid };
      this.used(ring, known);
      return { status: "ok", data: plain, kid };
    }
    const base = this.ratchetBase(ring, parts, now);
    if (!base) return { status: "missing_key", kid };
    let secret = base.secret;
    for (let step = base.step; step < parts.step; step++) secret = await ratchetSecret(secret);
    const context = await importSFrameKey(secret, kid);
    const plain = await openEncryptedFrame(read, context);
    if (plain === null) return { status: "bad_frame", kid };
    const entry = { kid, ...parts, secret, context, retireAt: null };
    ring.keys.set(kid, entry);
    this.used(ring, entry);
    return { status: "ok", data: plain, kid };
  }

  /** The newest live key of the frame's epoch below its step, within maxRatchetAhead. */
  ratchetBase(ring, parts, now) {
    let best = null;
    for (const entry of ring.keys.values()) {
      if (entry.epoch !== parts.epoch || entry.step >= parts.step) continue;
      if (entry.retireAt !== null && entry.retireAt <= now) continue;
      if (parts.step - entry.step > this.options.maxRatchetAhead) continue;
      if (!best || entry.step > best.step) best = entry;
    }
    return best;
  }

  used(ring, entry) {
    if (entry.kid <= ring.current) return;
    ring.current = entry.kid;
    const retireAt = this.now() + this.options.retireAfterMs;
    for (const other of ring.keys.values()) {
      if (other.kid < entry.kid && other.retireAt === null) other.retireAt = retireAt;
    }
    this.prune(ring);
  }

  /** Drops retired keys, then the oldest beyond maxKeysPerSender (never the one in use). */
  prune(ring) {
    const now = this.now();
    for (const [kid, entry] of ring.keys) if (entry.retireAt !== null && entry.retireAt <= now) ring.keys.delete(kid);
    const oldestFirst = [...ring.keys.keys()].filter((kid) => kid !== ring.current).sort((a, b) => a - b);
    while (ring.keys.size > this.options.maxKeysPerSender && oldestFirst.length > 0) {
      ring.keys.delete(oldestFirst.shift());
    }
  }

  /** Receive KIDs held per sender, for tests and diagnostics. */
  keysOf(sender) {
    const ring = this.senders.get(sender);
    return ring ? [...ring.keys.keys()].sort((a, b) => a - b) : [];
  }

  note(sender, state, kid) {
    let entry = this.status.get(sender);
    if (!entry) {
      if (sender !== null && !this.senders.has(sender) && this.status.size >= this.options.maxSenders) return;
      entry = { state: null, kid: null, reported: null, reportedAt: -Infinity };
      this.status.set(sender, entry);
    }
    entry.state = state;
    entry.kid = kid ?? null;
    if (entry.reported !== state) this.dirty.add(sender);
  }

  /**
   * Status changes due for the page, at most one per sender per statusIntervalMs:
   * `[{type: "status", sender (null for this side's sending), state, kid}]`. Call it after frames
   * and on a timer; a change held back by the throttle comes out on a later call.
   */
  takeStatusEvents() {
    const now = this.now();
    const events = [];
    for (const sender of this.dirty) {
      const entry = this.status.get(sender);
      if (!entry || entry.reported === entry.state) {
        this.dirty.delete(sender);
        continue;
      }
      if (now - entry.reportedAt < this.options.statusIntervalMs) continue;
      entry.reported = entry.state;
      entry.reportedAt = now;
      this.dirty.delete(sender);
      events.push({ type: "status", sender, state: entry.state, kid: entry.kid });
    }
    return events;
  }
}
