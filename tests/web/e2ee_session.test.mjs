// The page's E2EE glue (web/e2ee/session.js) with fakes: a relay standing in for the server, a
// worker standing in for the transform worker (a FrameCryptor in this process), timers run by hand.
import assert from "node:assert/strict";
import test from "node:test";

import { FrameCryptor } from "../../web/e2ee/cryptor.js";
import { encryptFrame } from "../../web/e2ee/frame.js";
import { E2eeSession } from "../../web/e2ee/session.js";
import { importSFrameKey } from "../../web/e2ee/sframe.js";
import { encodedTransformSupport, FrameTransforms } from "../../web/e2ee/transforms.js";

const OPUS = Uint8Array.from([0x78, 1, 2, 3, 4, 5, 6, 7]);

class FakeWorker extends EventTarget {
  constructor() {
    super();
    this.cryptor = new FrameCryptor();
    this.sendKey = null;
    this.work = Promise.resolve();
    this.posted = [];
  }
  postMessage(msg) {
    this.posted.push(msg);
    this.work = this.work.then(async () => {
      if (msg.type === "setSendKey") {
        await this.cryptor.setSendKey(msg.kid, msg.secret);
        this.sendKey = msg;
      } else if (msg.type === "setReceiveKey") await this.cryptor.setReceiveKey(msg.sender, msg.kid, msg.secret);
      else if (msg.type === "removeSender") this.cryptor.removeSender(msg.sender);
    });
  }
  status(sender, state) {
    this.dispatchEvent(Object.assign(new Event("message"), { data: { type: "status", sender, state, kid: 1 } }));
  }
}

/** The server's relay: e2ee_identity to the others, e2ee_key to the one addressed. */
class Relay {
  constructor({ swap = null } = {}) {
    this.sessions = new Map();
    this.swap = swap; // {sid, key}: a server that substitutes one participant's public key
  }
  add(sid, identity) {
    const timers = [];
    const worker = new FakeWorker();
    const session = new E2eeSession({
      self: { sid, identity },
      worker,
      send: (msg) => this.deliver(sid, identity, msg),
      setTimer: (fn, ms) => timers.push(fn) && timers.length,
      clearTimer: () => {},
      managerOptions: { joinCoalesceMs: 0, activateDelayMs: 0 },
    });
    const entry = { sid, identity, session, worker, timers, key: null };
    const present = [...this.sessions.values()].map((p) => ({ sid: p.sid, identity: p.identity, e2ee_key: p.key ?? undefined }));
    for (const other of this.sessions.values()) other.session.joined({ sid, identity });
    this.sessions.set(sid, entry);
    session.start(present);
    return entry;
  }
  deliver(from, identity, msg) {
    queueMicrotask(() => {
      if (msg.type === "e2ee_identity") {
        const key = this.swap && this.swap.sid === from ? this.swap.key : msg.key;
        this.sessions.get(from).key = key;
        for (const other of this.sessions.values()) {
          if (other.sid !== from) other.session.handle({ type: "e2ee_identity", sid: from, identity, key });
        }
      } else if (msg.type === "e2ee_keys") {
        for (const { to, data } of msg.keys) this.sessions.get(to)?.session.handle({ type: "e2ee_key", from, identity, data });
      }
    });
  }
  leave(sid) {
    const gone = this.sessions.get(sid);
    this.sessions.delete(sid);
    gone.session.close();
    for (const other of this.sessions.values()) other.session.left(sid);
  }
  async settle() {
    for (let round = 0; round < 20; round++) {
      await new Promise((r) => setTimeout(r, 5));
      for (const p of this.sessions.values()) {
        for (const fn of p.timers.splice(0)) fn();
        await p.session._chain;
        await p.worker.work;
      }
    }
  }
}

async function seal(worker, frame) {
  const { kid, secret } = worker.sendKey;
  const sealed = await encryptFrame("opus", frame, await importSFrameKey(secret, kid), BigInt(Math.floor(Math.random() * 1e6)));
  assert.ok(sealed.ok);
  return sealed.data;
}

test("three sessions: one safety code, keys for everybody, an audio slot opens whoever speaks", async () => {
  const relay = new Relay();
  const a = relay.add("A", "ana");
  const b = relay.add("B", "budi");
  const c = relay.add("C", "citra");
  await relay.settle();
  const codes = [a, b, c].map((p) => p.session.code.text);
  assert.equal(new Set(codes).size, 1, codes.join(" | "));
  assert.equal(a.session.code.digits.length, 5);
  assert.equal(a.session.code.emoji.length, 4);
  assert.equal(a.worker.posted.filter((m) => m.type === "setSendKey").length >= 1, true);
  // one audio slot at C carries Ana, then Budi, then Ana again: each frame opens with its sender's key
  const slot = [];
  for (const speaker of [a, b, a]) {
    const opened = await c.worker.cryptor.decryptAny([slot.at(-1) ?? null, "A"], "opus", await seal(speaker.worker, OPUS));
    assert.equal(opened.status, "ok");
    assert.deepEqual([...opened.data], [...OPUS]);
    slot.push(opened.sender);
  }
  assert.deepEqual(slot, ["A", "B", "A"]);
  // somebody leaves: the code changes, the same for those who stay, and Ana gets a fresh key
  const before = a.session.code.text;
  const kidBefore = a.worker.sendKey.kid;
  relay.leave("C");
  await new Promise((r) => setTimeout(r, 1600)); // the rotation waits for the burst of leaves to end
  await relay.settle();
  assert.notEqual(a.session.code.text, before);
  assert.equal(a.session.code.text, b.session.code.text);
  assert.notEqual(a.worker.sendKey.kid, kidBefore);
  const fresh = await b.worker.cryptor.decryptAny(["A"], "opus", await seal(a.worker, OPUS));
  assert.equal(fresh.status, "ok");
});

test("a server that swaps a public key shows its victim another safety code", async () => {
  const attacker = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", attacker.publicKey));
  const key = Buffer.from(raw).toString("base64url");
  const relay = new Relay({ swap: { sid: "B", key } });
  const a = relay.add("A", "ana");
  const b = relay.add("B", "budi");
  const c = relay.add("C", "citra");
  await relay.settle();
  assert.equal(a.session.code.text, c.session.code.text);
  assert.notEqual(a.session.code.text, b.session.code.text);
  // Budi's sealed keys do not open for the others: his frames never decrypt for them
  const frame = await seal(b.worker, OPUS);
  assert.equal((await a.worker.cryptor.decryptAny(["B"], "opus", frame)).status, "missing_key");
});

test("verified marks follow the public key; states come from the worker", async () => {
  const relay = new Relay();
  const a = relay.add("A", "ana");
  relay.add("B", "budi");
  await relay.settle();
  assert.equal(a.session.isVerified("budi"), false);
  a.session.setVerified("budi", true);
  assert.equal(a.session.isVerified("budi"), true);
  // Budi reconnects with a new identity key: the mark no longer holds
  const again = new Map(a.session.verified);
  relay.leave("B");
  relay.add("B2", "budi");
  await relay.settle();
  assert.deepEqual(new Map(a.session.verified), again);
  assert.equal(a.session.isVerified("budi"), false);
  assert.equal(a.session.senderState("B2"), "waiting");
  a.worker.status("B2", "ok");
  assert.equal(a.session.senderState("B2"), "ok");
  a.worker.status("B2", "missing_key");
  assert.equal(a.session.senderState("B2"), "waiting");
});

test("a session whose identity key cannot be made reports failure and announces nothing", async () => {
  const sent = [];
  const session = new E2eeSession({
    self: { sid: "A", identity: "ana" },
    worker: new FakeWorker(),
    send: (m) => sent.push(m),
    generateIdentity: async () => {
      throw new Error("no WebCrypto");
    },
  });
  let failed = null;
  session.addEventListener("failed", (ev) => (failed = ev.detail.error));
  await session.start([]);
  assert.equal(failed?.message, "no WebCrypto");
  assert.deepEqual(sent, []);
});

test("transforms: the standard API first, Chromium's streams second, none refused", () => {
  class Script {
    constructor(worker, options) {
      this.options = options;
    }
  }
  class WithStreams {
    createEncodedStreams() {}
  }
  assert.equal(encodedTransformSupport({ RTCRtpScriptTransform: Script }), "script");
  assert.equal(encodedTransformSupport({ RTCRtpSender: WithStreams, RTCRtpReceiver: WithStreams }), "streams");
  assert.equal(encodedTransformSupport({ RTCRtpSender: class {}, RTCRtpReceiver: class {} }), null);
  assert.throws(() => new FrameTransforms({ worker: {}, mode: null }));
  const posted = [];
  const worker = { postMessage: (m, transfer) => posted.push([m, transfer]) };
  const script = new FrameTransforms({ worker, mode: "script", ScriptTransform: Script });
  assert.deepEqual(script.rtcConfig(), {});
  const sender = {};
  script.attachSender(sender, "audio");
  assert.equal(sender.transform.options.direction, "send");
  assert.equal(sender.transform.options.codec, "audio/opus");
  const receiver = {};
  script.attachReceiver(receiver, "video", "B");
  script.retarget(receiver, "C");
  assert.deepEqual(posted.at(-1)[0], { type: "retarget", id: receiver.transform.options.id, sender: "C" });
  const streams = new FrameTransforms({ worker, mode: "streams" });
  assert.deepEqual(streams.rtcConfig(), { encodedInsertableStreams: true });
  const pair = { readable: {}, writable: {} };
  streams.attachReceiver({ createEncodedStreams: () => pair }, "audio");
  const [msg, transfer] = posted.at(-1);
  assert.equal(msg.type, "stream");
  assert.equal(msg.direction, "recv");
  assert.deepEqual(transfer, [pair.readable, pair.writable]);
});
