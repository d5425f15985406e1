// Identity keys, key blobs and the key manager (web/e2ee/keys.js, keymanager.js, cryptor.js).
import assert from "node:assert/strict";
import test from "node:test";

import {
  BLOB_LENGTH,
  derivePairKey,
  fromBase64Url,
  generateIdentity,
  importPublicKey,
  makeKid,
  openKeyBlob,
  ratchetSecret,
  sealKeyBlob,
  splitKid,
  toBase64Url,
} from "../../web/e2ee/keys.js";
import { OPUS_FRAME, Room } from "./e2ee_room.mjs";

const party = (sid, ids) => ({ sid, identity: `user-${sid}`, publicKeyRaw: ids.publicKeyRaw });

test("identity keys: private key not extractable, public key 65 bytes in 87 base64url characters", async () => {
  const ids = await generateIdentity();
  assert.equal(ids.privateKey.extractable, false);
  await assert.rejects(crypto.subtle.exportKey("pkcs8", ids.privateKey));
  assert.equal(ids.publicKey.length, 87);
  assert.match(ids.publicKey, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(fromBase64Url(ids.publicKey), ids.publicKeyRaw);
  assert.ok(await importPublicKey(ids.publicKey));
  assert.equal(await importPublicKey("not base64!"), null);
  assert.equal(await importPublicKey(toBase64Url(new Uint8Array(65))), null, "not a point");
  assert.equal(await importPublicKey(ids.publicKey.slice(0, 40)), null);
});

test("KIDs: epoch and step", () => {
  assert.equal(makeKid(3, 2), 770);
  assert.deepEqual(splitKid(770), { epoch: 3, step: 2 });
  assert.deepEqual(splitKid(770n), { epoch: 3, step: 2 });
  assert.equal(splitKid(1n << 60n), null);
  assert.throws(() => makeKid(1, 256), RangeError);
});

test("a key blob opens only for its recipient, from its sender, unchanged", async () => {
  const [a, b, c] = await Promise.all([generateIdentity(), generateIdentity(), generateIdentity()]);
  const [pa, pb, pc] = [party("A", a), party("B", b), party("C", c)];
  const pub = async (ids) => (await importPublicKey(ids.publicKey)).cryptoKey;
  const sealKey = await derivePairKey(a.privateKey, await pub(b), pa, pb);
  const secret = crypto.getRandomValues(new Uint8Array(16));
  const blob = await sealKeyBlob(sealKey, makeKid(9, 1), secret);
  assert.equal(fromBase64Url(blob).length, BLOB_LENGTH);
  assert.ok(blob.length <= 1024);
  const bOpens = await derivePairKey(b.privateKey, await pub(a), pa, pb);
  assert.deepEqual(await openKeyBlob(bOpens, blob), { kid: makeKid(9, 1), secret });
  // C, or B believing the blob came from C, or the other direction: nothing
  assert.equal(await openKeyBlob(await derivePairKey(c.privateKey, await pub(a), pa, pc), blob), null);
  assert.equal(await openKeyBlob(await derivePairKey(b.privateKey, await pub(c), pc, pb), blob), null);
  assert.equal(await openKeyBlob(await derivePairKey(b.privateKey, await pub(a), pb, pa), blob), null);
  assert.equal(await openKeyBlob(await derivePairKey(b.privateKey, await pub(a), { ...pa, sid: "X" }, pb), blob), null);
  const raw = fromBase64Url(blob);
  for (const at of [0, 5, 20, raw.length - 1]) {
    const bad = Uint8Array.from(raw);
    bad[at] ^= 1;
    assert.equal(await openKeyBlob(bOpens, toBase64Url(bad)), null, `byte ${at}`);
  }
  assert.equal(await openKeyBlob(bOpens, "%%"), null);
});

test("the ratchet is one-way and deterministic", async () => {
  const s0 = new Uint8Array(16).fill(1);
  const s1 = await ratchetSecret(s0);
  assert.deepEqual(await ratchetSecret(s0), s1);
  assert.notDeepEqual(s1, s0);
  assert.equal(s1.length, 16);
});

test("everybody decrypts everybody once the keys have gone round", async () => {
  const room = new Room();
  for (const sid of ["A", "B", "C"]) await room.add(sid);
  await room.advance(1000);
  for (const from of ["A", "B", "C"]) {
    const frame = await room.frameFrom(from);
    for (const to of ["A", "B", "C"].filter((s) => s !== from)) {
      const opened = await room.people.get(to).cryptor.decrypt(from, "opus", frame);
      assert.equal(opened.status, "ok", `${from} → ${to}`);
      assert.deepEqual(opened.data, OPUS_FRAME);
    }
  }
  assert.deepEqual(room.errors, []);
});

test("join: the newcomer cannot read what was sent before it came; the others ratchet on demand", async () => {
  const room = new Room();
  await room.add("A");
  await room.add("B");
  await room.advance(1000);
  const before = await room.frameFrom("A");
  assert.equal((await room.people.get("B").cryptor.decrypt("A", "opus", before)).status, "ok");
  const kidBefore = room.people.get("A").manager.stats().sendKid;
  const blobsBefore = room.blobsSent;
  await room.add("C");
  await room.advance(1000);
  const a = room.people.get("A").manager.stats();
  assert.equal(a.sendKid, kidBefore + 1, "one ratchet step, same epoch");
  assert.equal(a.rotations, 0);
  // A and B each sent their key to C, and C its key to A and B: no blob to the others
  assert.equal(room.blobsSent - blobsBefore, 4);
  const c = room.people.get("C").cryptor;
  assert.equal((await c.decrypt("A", "opus", before)).status, "missing_key");
  const after = await room.frameFrom("A");
  assert.equal((await c.decrypt("A", "opus", after)).status, "ok");
  assert.equal((await room.people.get("B").cryptor.decrypt("A", "opus", after)).status, "ok", "B ratcheted");
  assert.deepEqual(room.people.get("B").cryptor.keysOf("A"), [kidBefore, kidBefore + 1]);
  await room.advance(5000);
  await room.people.get("B").cryptor.decrypt("A", "opus", await room.frameFrom("A"));
  assert.deepEqual(room.people.get("B").cryptor.keysOf("A"), [kidBefore + 1], "the old step retired");
  assert.equal((await room.people.get("B").cryptor.decrypt("A", "opus", before)).status, "missing_key");
});

test("a frame ratcheted further than the bound, or forged under a later step, is not accepted", async () => {
  const room = new Room();
  await room.add("A");
  await room.add("B");
  await room.advance(1000);
  const b = room.people.get("B").cryptor;
  const frame = await room.frameFrom("A");
  const forged = Uint8Array.from(frame);
  const kid = room.people.get("A").manager.stats().sendKid;
  // rewrite the header for KID + 1 (same length): the ratcheted key does not authenticate it
  forged.set([0xb0 | (frame[1] & 0x0f)], 1);
  const header = Buffer.from(forged.subarray(2, 6));
  header.writeUInt32BE(kid + 1);
  forged.set(header, 2);
  assert.equal((await b.decrypt("A", "opus", forged)).status, "bad_frame");
  assert.deepEqual(b.keysOf("A"), [kid], "nothing kept from a forged frame");
});

test("leave: after the rotation the leaver, keeping all its keys, reads nothing more", async () => {
  const room = new Room();
  for (const sid of ["A", "B", "C"]) await room.add(sid);
  await room.advance(1000);
  const c = await room.leave("C");
  const during = await room.frameFrom("A");
  assert.equal((await c.cryptor.decrypt("A", "opus", during)).status, "ok", "before the rotation");
  await room.advance(3000);
  const stats = room.people.get("A").manager.stats();
  assert.equal(stats.rotations, 1);
  const after = await room.frameFrom("A");
  assert.equal((await c.cryptor.decrypt("A", "opus", after)).status, "missing_key");
  assert.equal((await room.people.get("B").cryptor.decrypt("A", "opus", after)).status, "ok");
  await room.advance(5000);
  assert.deepEqual(room.people.get("B").cryptor.keysOf("C"), [], "the leaver's keys are gone");
});

test("ten leaves within a second make one rotation per sender", async () => {
  const room = new Room();
  const sids = Array.from({ length: 14 }, (_, i) => `P${i}`);
  for (const sid of sids) await room.add(sid);
  await room.advance(2000);
  const messagesBefore = room.messagesSent;
  const blobsBefore = room.blobsSent;
  for (const sid of sids.slice(4)) {
    await room.leave(sid);
    await room.advance(100);
  }
  await room.advance(3000);
  for (const sid of sids.slice(0, 4)) assert.equal(room.people.get(sid).manager.stats().rotations, 1, sid);
  assert.equal(room.messagesSent - messagesBefore, 4, "one e2ee_keys message per sender");
  assert.equal(room.blobsSent - blobsBefore, 4 * 3);
  const frame = await room.frameFrom("P0");
  for (const sid of sids.slice(1, 4)) assert.equal((await room.people.get(sid).cryptor.decrypt("P0", "opus", frame)).status, "ok");
});

test("a participant whose public key changes is treated as gone: fresh key, old keys dropped", async () => {
  const room = new Room();
  await room.add("A");
  await room.add("B");
  await room.advance(1000);
  const a = room.people.get("A");
  const other = await generateIdentity();
  await room.apply(a, await a.manager.onIdentity("B", "user-B", other.publicKey));
  assert.deepEqual(a.cryptor.keysOf("B"), []);
  await room.advance(3000);
  assert.equal(a.manager.stats().rotations, 1);
});

test("a key blob that arrives before its sender's public key is kept and used", async () => {
  const room = new Room();
  const a = await room.add("A");
  const ids = await generateIdentity();
  const b = await room.add("B", { identityKeys: ids });
  await room.advance(1000);
  const late = new Room();
  late.t = room.t;
  const fresh = await late.add("A");
  // B's blob for A reaches a fresh A before B's key does
  const sealed = await b.manager.onIdentity("A2", "user-A", fresh.key);
  const blob = sealed.find((x) => x.type === "send").message.keys[0].data;
  const m = fresh.manager;
  m.self.sid = "A2";
  assert.deepEqual(await m.onKeyMessage("B", blob), []);
  const actions = await m.onIdentity("B", "user-B", ids.publicKey);
  assert.ok(actions.some((x) => x.type === "setReceiveKey" && x.sender === "B"));
  assert.ok(a);
});

test("100 participants: one message per rotation per sender, and bounded state", { timeout: 120_000 }, async () => {
  const room = new Room();
  for (let i = 0; i < 100; i++) await room.add(`S${i}`);
  await room.advance(3000);
  assert.deepEqual(room.errors, []);
  const messagesBefore = room.messagesSent;
  const blobsBefore = room.blobsSent;
  const rotationsBefore = new Map([...room.people.values()].map((p) => [p.sid, p.manager.stats().rotations]));
  await room.leave("S99");
  await room.advance(3000);
  assert.equal(room.messagesSent - messagesBefore, 99);
  assert.equal(room.blobsSent - blobsBefore, 99 * 98);
  for (const person of room.people.values()) {
    const stats = person.manager.stats();
    assert.equal(stats.peers, 98);
    assert.equal(stats.rotations, rotationsBefore.get(person.sid) + 1);
    assert.equal(stats.pendingBlobs, 0);
    assert.ok(person.cryptor.senders.size <= 99);
  }
  const s0 = room.people.get("S0").cryptor;
  for (let i = 1; i < 99; i += 7) {
    const frame = await room.frameFrom(`S${i}`);
    assert.equal((await s0.decrypt(`S${i}`, "opus", frame)).status, "ok");
    assert.ok(s0.keysOf(`S${i}`).length <= 4);
  }
  // each of the 99 joins after S0 ratcheted S0 at most once, and never beyond the epoch's steps
  const s0stats = room.people.get("S0").manager.stats();
  assert.ok(s0stats.ratchets <= 99);
  assert.ok(s0stats.sendKid % 256 <= 32);
});

test("a receiver that saw nothing from a sender through many joins still decrypts it", async () => {
  const room = new Room();
  await room.add("A");
  await room.add("B");
  await room.advance(1000);
  const kid = room.people.get("A").manager.stats().sendKid;
  for (let i = 0; i < 40; i++) {
    await room.add(`N${i}`);
    await room.advance(300);
  }
  const a = room.people.get("A").manager.stats();
  assert.ok(a.rotations >= 1, "a fresh epoch after the allowed steps");
  assert.ok(a.sendKid > kid);
  const opened = await room.people.get("B").cryptor.decrypt("A", "opus", await room.frameFrom("A"));
  assert.equal(opened.status, "ok");
});

test("a newcomer learning everybody's key from one list ratchets once and sends one message", async () => {
  const { KeyManager } = await import("../../web/e2ee/keys.js");
  let t = 0;
  const ids = await generateIdentity();
  const manager = new KeyManager({ sid: "N", identity: "new", identityKeys: ids }, { now: () => t });
  await manager.start();
  const list = [];
  for (let i = 0; i < 10; i++) list.push({ sid: `P${i}`, identity: `p${i}`, key: (await generateIdentity()).publicKey });
  const actions = await manager.onParticipants([...list, { sid: "N", identity: "new", key: ids.publicKey }]);
  const sends = actions.filter((a) => a.type === "send");
  assert.equal(sends.length, 1);
  assert.deepEqual(sends[0].message.keys.map((k) => k.to), list.map((p) => p.sid));
  assert.equal(manager.stats().ratchets, 1);
  t += 10_000;
  assert.deepEqual(await manager.tick(), []);
  assert.equal(manager.nextDeadline(), null);
});

test("a newcomer arriving while a rotation is pending gets the fresh key, not the old one", async () => {
  const room = new Room();
  for (const sid of ["A", "B", "C"]) await room.add(sid);
  await room.advance(1000);
  const oldFrame = await room.frameFrom("A");
  await room.leave("C");
  await room.add("D");
  await room.deliver();
  const d = room.people.get("D").cryptor;
  assert.equal((await d.decrypt("A", "opus", oldFrame)).status, "missing_key");
  await room.advance(3000);
  assert.equal(room.people.get("A").manager.stats().rotations, 1);
  assert.equal((await d.decrypt("A", "opus", await room.frameFrom("A"))).status, "ok");
});
