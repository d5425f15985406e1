// The fixed vectors in e2ee_vectors.json, made by the load tool's Python mirror
// (tests/loadtest/test_e2ee.py): the browser modules must make and accept the same bytes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";

import { decryptFrame, encryptFrame } from "../../web/e2ee/frame.js";
import { derivePairKey, importPublicKey, openKeyBlob, ratchetSecret, sealKeyBlob } from "../../web/e2ee/keys.js";
import { safetyCode, safetyInput } from "../../web/e2ee/safety.js";
import { importSFrameKey } from "../../web/e2ee/sframe.js";

const vectors = JSON.parse(readFileSync(new URL("./e2ee_vectors.json", import.meta.url), "utf8"));
const bytes = (t) => new Uint8Array(Buffer.from(t, "hex"));
const hex = (b) => Buffer.from(b).toString("hex");

test("frames: the same encrypted bytes per codec, and they open", async () => {
  const { base_key: baseKey, kid, cases } = vectors.frames;
  const context = await importSFrameKey(bytes(baseKey), kid);
  assert.ok(cases.length >= 5);
  for (const c of cases) {
    const sealed = await encryptFrame(c.codec, bytes(c.frame), context, BigInt(c.ctr));
    assert.equal(hex(sealed.data), c.encrypted, c.name);
    const opened = await decryptFrame(c.codec, bytes(c.encrypted), async () => context);
    assert.equal(hex(opened.data), c.frame, c.name);
  }
});

test("key blob: the same blob from the same keys and nonce; the recipient opens it", async () => {
  const v = vectors.blob;
  const ecdh = { name: "ECDH", namedCurve: "P-256" };
  const priv = (jwk) => crypto.subtle.importKey("jwk", jwk, ecdh, false, ["deriveBits"]);
  const party = async (p) => ({ sid: p.sid, identity: p.identity, publicKeyRaw: (await importPublicKey(p.key)).raw });
  const sender = await party(v.sender);
  const recipient = await party(v.recipient);
  const sealKey = await derivePairKey(await priv(v.sender.jwk), (await importPublicKey(v.recipient.key)).cryptoKey, sender, recipient);
  const blob = await sealKeyBlob(sealKey, v.kid, bytes(v.secret), { nonce: bytes(v.nonce) });
  assert.equal(blob, v.blob);
  const openKey = await derivePairKey(await priv(v.recipient.jwk), (await importPublicKey(v.sender.key)).cryptoKey, sender, recipient);
  assert.deepEqual(await openKeyBlob(openKey, v.blob), { kid: v.kid, secret: bytes(v.secret) });
});

test("ratchet: the same chain of secrets", async () => {
  let secret = bytes(vectors.ratchet[0]);
  for (const expected of vectors.ratchet.slice(1)) {
    secret = await ratchetSecret(secret);
    assert.equal(hex(secret), expected);
  }
});

test("safety code: the same digest and digits", async () => {
  const { entries, digest, digits } = vectors.safety;
  const mine = new Uint8Array(await crypto.subtle.digest("SHA-256", safetyInput(entries)));
  assert.equal(hex(mine), digest);
  assert.deepEqual((await safetyCode(entries)).digits, digits);
});
