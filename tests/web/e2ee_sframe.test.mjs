// SFrame (web/e2ee/sframe.js) against the test vectors of RFC 9605, Appendix C.
import assert from "node:assert/strict";
import test from "node:test";

import {
  deriveKeySalt,
  derivationLabels,
  encodeHeader,
  frameNonce,
  importSFrameKey,
  parseHeader,
  sframeDecrypt,
  sframeEncrypt,
} from "../../web/e2ee/sframe.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const bytes = (text) => new Uint8Array(Buffer.from(text, "hex"));

// RFC 9605 Appendix C.1 (a selection covering every header form and length)
const HEADER_VECTORS = [
  [0n, 0n, "00"],
  [0n, 255n, "08ff"],
  [0n, 256n, "090100"],
  [0n, 65535n, "09ffff"],
  [0n, 65536n, "0a010000"],
  [0n, 16777215n, "0affffff"],
  [0n, 4294967296n, "0c0100000000"],
  [0n, 18446744073709551615n, "0fffffffffffffffff"],
  [1n, 1n, "11"],
  [255n, 0n, "80ff"],
  [256n, 256n, "9901000100"],
  [65535n, 1n, "91ffff"],
  [65536n, 0n, "a0010000"],
  [4294967295n, 4294967296n, "bcffffffff0100000000"],
  [72057594037927936n, 72057594037927935n, "fe0100000000000000ffffffffffffff"],
  [18446744073709551615n, 18446744073709551615n, "ffffffffffffffffffffffffffffffffff"],
];

// RFC 9605 Appendix C.3, cipher suite 0x0004 (AES_128_GCM_SHA256_128)
const AES_GCM_VECTOR = {
  kid: 0x123n,
  ctr: 0x4567n,
  baseKey: "000102030405060708090a0b0c0d0e0f",
  keyLabel: "534672616d6520312e3020536563726574206b65792000000000000001230004",
  saltLabel: "534672616d6520312e30205365637265742073616c742000000000000001230004",
  sframeKey: "d34f547f4ca4f9a7447006fe7fcbf768",
  sframeSalt: "75234edefe07819026751816",
  metadata: "4945544620534672616d65205747",
  nonce: "75234edefe07819026755d71",
  pt: "64726166742d696574662d736672616d652d656e63",
  ct: "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb",
};

test("RFC 9605 C.1: headers encode to the listed bytes and parse back", () => {
  for (const [kid, ctr, encoded] of HEADER_VECTORS) {
    assert.equal(hex(encodeHeader(kid, ctr)), encoded, `kid ${kid} ctr ${ctr}`);
    assert.deepEqual(parseHeader(bytes(encoded)), { kid, ctr, length: encoded.length / 2 });
  }
});

test("headers: small numbers, trailing bytes, truncation and non-shortest forms", () => {
  assert.equal(hex(encodeHeader(7, 7)), "77");
  assert.equal(hex(encodeHeader(8, 0)), "8008");
  assert.deepEqual(parseHeader(bytes("1199aa")), { kid: 1n, ctr: 1n, length: 1 });
  assert.deepEqual(parseHeader(bytes("ff0011"), 2), { kid: 1n, ctr: 1n, length: 1 });
  assert.equal(parseHeader(new Uint8Array(0)), null);
  assert.equal(parseHeader(bytes("0901")), null, "CTR cut short");
  assert.equal(parseHeader(bytes("9901")), null, "KID cut short");
  assert.equal(parseHeader(bytes("0805")), null, "CTR 5 must sit in the config byte");
  assert.equal(parseHeader(bytes("090001")), null, "leading zero byte");
  assert.throws(() => encodeHeader(-1, 0), RangeError);
  assert.throws(() => encodeHeader(0, 1n << 64n), RangeError);
});

test("RFC 9605 C.3: key derivation, nonce and encryption for AES_128_GCM_SHA256_128", async () => {
  const v = AES_GCM_VECTOR;
  const labels = derivationLabels(v.kid);
  assert.equal(hex(labels.keyLabel), v.keyLabel);
  assert.equal(hex(labels.saltLabel), v.saltLabel);
  const { key, salt } = await deriveKeySalt(bytes(v.baseKey), v.kid);
  assert.equal(hex(key), v.sframeKey);
  assert.equal(hex(salt), v.sframeSalt);
  assert.equal(hex(frameNonce(salt, v.ctr)), v.nonce);
  const context = await importSFrameKey(bytes(v.baseKey), v.kid);
  const ct = await sframeEncrypt(context, v.ctr, bytes(v.metadata), bytes(v.pt));
  assert.equal(hex(ct), v.ct);
  const header = parseHeader(bytes(v.ct));
  assert.equal(hex(await sframeDecrypt(context, header, bytes(v.metadata), bytes(v.ct))), v.pt);
});

test("SFrame decryption fails on any changed byte, other metadata or another KID", async () => {
  const v = AES_GCM_VECTOR;
  const context = await importSFrameKey(bytes(v.baseKey), v.kid);
  const ct = bytes(v.ct);
  const header = parseHeader(ct);
  for (const at of [0, 5, 10, ct.length - 1]) {
    const bad = Uint8Array.from(ct);
    bad[at] ^= 0x01;
    const parsed = parseHeader(bad) ?? header;
    assert.equal(await sframeDecrypt(context, parsed, bytes(v.metadata), bad), null, `byte ${at}`);
  }
  assert.equal(await sframeDecrypt(context, header, bytes("00"), ct), null);
  const other = await importSFrameKey(bytes(v.baseKey), 0x124n);
  assert.equal(await sframeDecrypt(other, header, bytes(v.metadata), ct), null);
  assert.equal(await sframeDecrypt(context, header, bytes(v.metadata), ct.subarray(0, 10)), null);
});
