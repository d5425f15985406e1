// The media-key manager of one participant: a state machine with an injected clock and crypto.
//
// In:  start(), onParticipants(list), onJoin(sid, identity), onIdentity(sid, identity, key),
//      onLeave(sid), onKeyMessage(fromSid, data), tick() when nextDeadline() has come.
// Out: every call resolves to a list of actions for the page to carry out in order:
//   {type: "send", message: {type: "e2ee_keys", keys: [{to, data}, …]}}   (≤ 100 entries each)
//   {type: "setSendKey", kid, secret}                    → worker: encrypt with this key from now
//   {type: "setReceiveKey", sender, kid, secret}         → worker: a key of that sender
//   {type: "removeSender", sender}                       → worker: forget that sender's keys
//   {type: "keyError", from, reason}                     → for the page's log; nothing to do
//
// Policy (times in options, defaults below):
// * join: the sender ratchets its key one step and sends the new step to the newcomers only; the
//   others follow by ratcheting on demand when they see the new KID. At most one ratchet per
//   joinCoalesceMs, so a burst of joins costs a few ratchets; newcomers wait at most that long.
//   After maxStepsPerEpoch steps the next join starts a fresh epoch sent to everybody instead, so
//   that no receiver ever lags more steps behind than the worker ratchets on demand (64).
// * leave: a fresh random key, sent to everybody still here, once leaves have been quiet for
//   leaveQuietMs or at the latest leaveMaxDelayMs after the first leave of a burst; it is used for
//   frames activateDelayMs after it was sent, so that it arrives before the frames it protects.
// * a left sender's keys are removed from the worker retireAfterMs after the leave (frames in
//   flight); the worker retires a sender's older keys by itself once a newer one is in use.

import {
  MAX_STEP,
  SECRET_LENGTH,
  derivePairKeys,
  importPublicKey,
  makeKid,
  openKeyBlob,
  ratchetSecret,
  sealKeyBlob,
} from "./keys.js";

export const DEFAULT_OPTIONS = Object.freeze({
  joinCoalesceMs: 250,
  leaveQuietMs: 400,
  leaveMaxDelayMs: 1500,
  activateDelayMs: 500,
  retireAfterMs: 4000,
  maxPeers: 128,
  maxPendingBlobs: 4,
  maxStepsPerEpoch: 32,
  keysPerMessage: 100,
});

const MAX_IDENTITY_LENGTH = 256;

export class KeyManager {
  /**
   * `self`: `{sid, identity, identityKeys}` with identityKeys from `generateIdentity()`.
   * `now()`: milliseconds; `crypto`: a WebCrypto object (default globalThis.crypto).
   */
  constructor(self, { now = () => Date.now(), crypto = globalThis.crypto, options = {} } = {}) {
    this.self = {
      sid: self.sid,
      identity: self.identity,
      publicKeyRaw: self.identityKeys.publicKeyRaw,
      publicKey: self.identityKeys.publicKey,
    };
    this.privateKey = self.identityKeys.privateKey;
    this.now = now;
    this.crypto = crypto;
    this.options = { ...DEFAULT_OPTIONS, ...options };
    /** sid → {sid, identity, key?, publicKeyRaw?, cryptoKey?, sendKey?, receiveKey?, pending[]} */
    this.peers = new Map();
    this.send = null; // {epoch, step, secret, kid}: the key the worker encrypts with
    this.next = null; // {epoch, step, secret, kid, activateAt}: sent, not yet in use
    this.newcomers = new Set();
    this.lastRatchetAt = -Infinity;
    this.ratchetAt = null;
    this.leaves = null; // {first, last}
    this.removals = []; // [{sender, at}]
    this.rotations = 0;
    this.ratchets = 0;
    this.queue = Promise.resolve();
  }

  /** Runs `work` after every earlier call, so that calls never interleave. */
  serial(work) {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }

  start() {
    return this.serial(async () => {
      if (this.send) return [];
      const epoch = 1 + (this.crypto.getRandomValues(new Uint32Array(1))[0] & 0xffffff);
      this.send = this.freshKey(epoch);
      const known = [...this.peers.values()].filter((p) => p.sendKey).map((p) => p.sid);
      return [this.sendKeyAction(this.send), ...(await this.sealTo(known, this.send))];
    });
  }

  onJoin(sid, identity) {
    return this.serial(async () => {
      if (sid !== this.self.sid && !this.peers.has(sid) && this.peers.size < this.options.maxPeers) {
        this.peers.set(sid, { sid, identity: String(identity ?? ""), pending: [] });
      }
      return [];
    });
  }

  onIdentity(sid, identity, key) {
    return this.serial(async () => [...(await this.learnKey(sid, identity, key)), ...(await this.dueRatchet())]);
  }

  /** The server's list of everybody's keys: `[{sid, identity, key}]`; this side's own is skipped. */
  onParticipants(list) {
    return this.serial(async () => {
      const actions = [];
      const listed = new Set();
      for (const entry of Array.isArray(list) ? list : []) {
        if (!entry || typeof entry.sid !== "string") continue;
        listed.add(entry.sid);
        actions.push(...(await this.learnKey(entry.sid, entry.identity, entry.key)));
      }
      for (const [sid, peer] of this.peers) {
        if (peer.key !== undefined && !listed.has(sid)) actions.push(...this.forget(sid));
      }
      actions.push(...(await this.dueRatchet()));
      return actions;
    });
  }

  onLeave(sid) {
    return this.serial(async () => this.forget(sid));
  }

  /** An `e2ee_key {from, data}` message. */
  onKeyMessage(from, data) {
    return this.serial(async () => {
      let peer = this.peers.get(from);
      if (!peer) {
        // the sender's public key may still be on its way: keep the blob for it
        if (typeof from !== "string" || from === this.self.sid || this.peers.size >= this.options.maxPeers) {
          return [{ type: "keyError", from, reason: "unknown_sender" }];
        }
        peer = { sid: from, identity: "", pending: [] };
        this.peers.set(from, peer);
      }
      if (typeof data !== "string") return [{ type: "keyError", from, reason: "bad_blob" }];
      if (!peer.cryptoKey) {
        if (peer.pending.length >= this.options.maxPendingBlobs) peer.pending.shift();
        peer.pending.push(data);
        return [];
      }
      return this.openBlob(peer, data);
    });
  }

  /** When `tick()` has work next (ms on the injected clock), or null. */
  nextDeadline() {
    const times = [this.ratchetAt, this.next?.activateAt, this.leaveDueAt(), ...this.removals.map((r) => r.at)];
    const due = times.filter((t) => t !== null && t !== undefined);
    return due.length ? Math.min(...due) : null;
  }

  tick() {
    return this.serial(async () => {
      const now = this.now();
      const actions = [];
      const leaveDue = this.leaveDueAt();
      if (leaveDue !== null && now >= leaveDue) actions.push(...(await this.rotate(now)));
      if (this.ratchetAt !== null && now >= this.ratchetAt) actions.push(...(await this.ratchetForNewcomers(now)));
      if (this.next && now >= this.next.activateAt) {
        this.send = this.next;
        this.next = null;
        actions.push(this.sendKeyAction(this.send));
      }
      const due = this.removals.filter((r) => r.at <= now);
      this.removals = this.removals.filter((r) => r.at > now);
      for (const r of due) if (!this.peers.has(r.sender)) actions.push({ type: "removeSender", sender: r.sender });
      return actions;
    });
  }

  /** Everybody's `{identity, key}` (this side's included), for the safety code. */
  safetyEntries() {
    const entries = [{ identity: this.self.identity, key: this.self.publicKey }];
    for (const peer of this.peers.values()) if (peer.key !== undefined) entries.push({ identity: peer.identity, key: peer.key });
    return entries;
  }

  /** Numbers for tests and the page's diagnostics. */
  stats() {
    return {
      peers: this.peers.size,
      withKeys: [...this.peers.values()].filter((p) => p.cryptoKey).length,
      pendingBlobs: [...this.peers.values()].reduce((n, p) => n + p.pending.length, 0),
      removals: this.removals.length,
      rotations: this.rotations,
      ratchets: this.ratchets,
      sendKid: this.send?.kid ?? null,
    };
  }

  // ---- internals -------------------------------------------------------------------------------

  freshKey(epoch) {
    const secret = this.crypto.getRandomValues(new Uint8Array(SECRET_LENGTH));
    return { epoch, step: 0, secret, kid: makeKid(epoch, 0) };
  }

  sendKeyAction(key) {
    return { type: "setSendKey", kid: key.kid, secret: key.secret };
  }

  /** The key newcomers must get: the one about to be used if a rotation is on its way. */
  latestKey() {
    return this.next ?? this.send;
  }

  leaveDueAt() {
    if (!this.leaves) return null;
    return Math.min(this.leaves.last + this.options.leaveQuietMs, this.leaves.first + this.options.leaveMaxDelayMs);
  }

  async learnKey(sid, identity, key) {
    if (sid === this.self.sid || typeof key !== "string") return [];
    const name = String(identity ?? "").slice(0, MAX_IDENTITY_LENGTH);
    const actions = [];
    let peer = this.peers.get(sid);
    if (peer?.key === key) return [];
    if (peer?.key !== undefined) {
      // a new key under a known sid: whoever held the old one must not read on
      actions.push(...this.forget(sid), { type: "removeSender", sender: sid });
      this.removals = this.removals.filter((r) => r.sender !== sid);
      peer = undefined;
    }
    if (!peer) {
      if (this.peers.size >= this.options.maxPeers) return [...actions, { type: "keyError", from: sid, reason: "too_many_peers" }];
      peer = { sid, identity: name, pending: [] };
      this.peers.set(sid, peer);
    }
    const imported = await importPublicKey(key, this.crypto);
    if (!imported) return [...actions, { type: "keyError", from: sid, reason: "bad_public_key" }];
    peer.identity = name;
    peer.key = key;
    peer.publicKeyRaw = imported.raw;
    peer.cryptoKey = imported.cryptoKey;
    const me = { sid: this.self.sid, identity: this.self.identity, publicKeyRaw: this.self.publicKeyRaw };
    const them = { sid, identity: name, publicKeyRaw: imported.raw };
    const pair = await derivePairKeys(this.privateKey, imported.cryptoKey, me, them, this.crypto);
    peer.sendKey = pair.sendKey;
    peer.receiveKey = pair.receiveKey;
    for (const data of peer.pending.splice(0)) actions.push(...(await this.openBlob(peer, data)));
    if (this.send) {
      this.newcomers.add(sid);
      if (this.ratchetAt === null) this.ratchetAt = Math.max(this.now(), this.lastRatchetAt + this.options.joinCoalesceMs);
    }
    return actions;
  }

  /** The newcomers' ratchet if it is due now (after all the keys one call brought are known). */
  async dueRatchet() {
    const now = this.now();
    return this.ratchetAt !== null && now >= this.ratchetAt ? this.ratchetForNewcomers(now) : [];
  }

  forget(sid) {
    const peer = this.peers.get(sid);
    if (!peer) return [];
    this.peers.delete(sid);
    this.newcomers.delete(sid);
    const now = this.now();
    this.removals.push({ sender: sid, at: now + this.options.retireAfterMs });
    if (peer.key !== undefined && this.send) this.leaves = { first: this.leaves?.first ?? now, last: now };
    return [];
  }

  /**
   * One ratchet step for everybody, the new step sealed to the newcomers. Always a step, even when
   * nobody else holds the current key: frames under it may have been recorded.
   */
  async ratchetForNewcomers(now) {
    this.ratchetAt = null;
    const targets = [...this.newcomers].filter((sid) => this.peers.get(sid)?.sendKey);
    this.newcomers.clear();
    if (targets.length === 0) return [];
    const actions = [];
    if (this.leaves) {
      // a rotation is due within leaveMaxDelayMs and goes to everybody, newcomers included
      return [];
    }
    if (this.next) {
      // a fresh key is on its way and nobody who left has it: the newcomers get that one
    } else if (this.send.step >= Math.min(MAX_STEP, this.options.maxStepsPerEpoch)) {
      return this.rotate(now);
    } else {
      const step = this.send.step + 1;
      const secret = await ratchetSecret(this.send.secret);
      this.send = { epoch: this.send.epoch, step, secret, kid: makeKid(this.send.epoch, step) };
      this.lastRatchetAt = now;
      this.ratchets += 1;
      actions.push(this.sendKeyAction(this.send));
    }
    actions.push(...(await this.sealTo(targets, this.latestKey())));
    return actions;
  }

  /** A fresh random key for everybody still here, used after activateDelayMs. */
  async rotate(now) {
    this.leaves = null;
    this.newcomers.clear();
    this.ratchetAt = null;
    const base = this.latestKey();
    const key = this.freshKey(base.epoch + 1);
    this.next = { ...key, activateAt: now + this.options.activateDelayMs };
    this.rotations += 1;
    const targets = [...this.peers.values()].filter((p) => p.sendKey).map((p) => p.sid);
    return this.sealTo(targets, this.next);
  }

  async sealTo(sids, key) {
    const entries = [];
    for (const sid of sids) {
      const peer = this.peers.get(sid);
      if (!peer?.sendKey) continue;
      entries.push({ to: sid, data: await sealKeyBlob(peer.sendKey, key.kid, key.secret, { crypto: this.crypto }) });
    }
    const actions = [];
    for (let i = 0; i < entries.length; i += this.options.keysPerMessage) {
      actions.push({ type: "send", message: { type: "e2ee_keys", keys: entries.slice(i, i + this.options.keysPerMessage) } });
    }
    return actions;
  }

  async openBlob(peer, data) {
    const opened = await openKeyBlob(peer.receiveKey, data, this.crypto);
    if (!opened) return [{ type: "keyError", from: peer.sid, reason: "bad_blob" }];
    return [{ type: "setReceiveKey", sender: peer.sid, kid: opened.kid, secret: opened.secret }];
  }
}
