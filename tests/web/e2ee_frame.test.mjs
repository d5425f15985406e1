// Encoded frames under SFrame (web/e2ee/frame.js): clear prefixes per codec, round trips, tampering.
import assert from "node:assert/strict";
import test from "node:test";

import {
  clearPrefix,
  codecFromMimeType,
  decryptFrame,
  encryptFrame,
  escapeEmulation,
  findStartCodes,
  unescapeEmulation,
} from "../../web/e2ee/frame.js";
import { importSFrameKey } from "../../web/e2ee/sframe.js";

const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (t) => new Uint8Array(Buffer.from(t.replaceAll(" ", ""), "hex"));
const filler = (n, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const BASE = bytes("00112233445566778899aabbccddeeff");
const context = () => importSFrameKey(BASE, 0x1234);
const finder = (ctx) => async (kid) => (kid === ctx.kid ? ctx : null);

// VP8: keyframe bit 0 = key; start code 9d 01 2a; 640x480
const VP8_KEY = new Uint8Array([0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, ...filler(300)]);
const VP8_DELTA = new Uint8Array([0x31, 0x05, 0x00, ...filler(120)]);
const OPUS = new Uint8Array([0x78, ...filler(60)]);
const SPS = "67 42 c0 1f da 01 40 16 e8 06 d0 a1 35";
const PPS = "68 ce 06 e2";
const IDR = "65 88 84 00 33 ff"; // NAL header, then slice header bits
// zeros inside the slice data make start-code look-alikes in the plaintext
const H264_KEY = bytes(`00 00 00 01 ${SPS} 00 00 01 ${PPS} 00 00 01 ${IDR} 00 00 03 01 00 00 00 02 ${hex(filler(200))}`);
const H264_DELTA = bytes(`00 00 00 01 41 9a 02 04 05 ${hex(filler(100))}`);

test("codec names come from mime types", () => {
  assert.equal(codecFromMimeType("video/VP8"), "vp8");
  assert.equal(codecFromMimeType("audio/opus"), "opus");
  assert.equal(codecFromMimeType("H264"), "h264");
  assert.equal(codecFromMimeType(undefined), "");
});

test("clear prefixes: VP8 10 bytes on keyframes and 3 otherwise, Opus its TOC byte", () => {
  assert.equal(clearPrefix("vp8", VP8_KEY).length, 10);
  assert.equal(clearPrefix("vp8", VP8_DELTA).length, 3);
  assert.equal(clearPrefix("opus", OPUS).length, 1);
  assert.deepEqual(clearPrefix("vp8", VP8_KEY.subarray(0, 9)), { error: "bad_frame" });
  assert.deepEqual(clearPrefix("vp9", VP8_KEY), { error: "unsupported_codec" });
  assert.deepEqual(clearPrefix("av1", VP8_KEY), { error: "unsupported_codec" });
  assert.deepEqual(clearPrefix("", VP8_KEY), { error: "unsupported_codec" });
});

test("clear prefix of H.264: parameter sets whole, the slice's NAL header and 4 bytes more", () => {
  const prefix = clearPrefix("h264", H264_KEY);
  const sliceAt = hex(H264_KEY).indexOf("65888400") / 2;
  assert.equal(prefix.length, sliceAt + 5);
  assert.equal(hex(prefix.metadata), `0000000167${SPS.slice(3).replaceAll(" ", "")}0000000168ce06e2000000016588840033`);
  assert.equal(clearPrefix("h264", H264_DELTA).length, 4 + 5);
  assert.deepEqual(clearPrefix("h264", bytes(`00 00 01 ${SPS}`)), { error: "bad_frame" });
  assert.deepEqual(clearPrefix("h264", bytes("00 00 01 65 88")), { error: "bad_frame" });
  assert.deepEqual(clearPrefix("h264", filler(50, 1).map((b) => b | 0x10)), { error: "bad_frame" });
});

test("emulation prevention escapes start-code look-alikes and undoes exactly", () => {
  const cases = ["000001", "000000", "000002", "000003", "0000", "00000300", "0000030000", "00", "0102", "000003ff"];
  for (const c of cases) {
    const raw = bytes(c);
    const escaped = escapeEmulation(raw);
    assert.equal(findStartCodes(escaped).length, 0, c);
    assert.equal(hex(unescapeEmulation(escaped)), c, c);
  }
  assert.equal(hex(escapeEmulation(bytes("01"), 2)), "0301");
  assert.equal(hex(unescapeEmulation(bytes("0301"), 2)), "01");
  for (let seed = 0; seed < 200; seed++) {
    const raw = Uint8Array.from({ length: 64 }, (_, i) => ((i * seed * 7919) >> 3) % 4);
    assert.equal(hex(unescapeEmulation(escapeEmulation(raw, seed % 3), seed % 3)), hex(raw));
  }
});

for (const [name, codec, frame] of [
  ["VP8 keyframe", "vp8", VP8_KEY],
  ["VP8 delta frame", "vp8", VP8_DELTA],
  ["Opus", "opus", OPUS],
  ["H.264 IDR with SPS and PPS", "h264", H264_KEY],
  ["H.264 non-IDR", "h264", H264_DELTA],
]) {
  test(`round trip: ${name}`, async () => {
    const ctx = await context();
    const prefix = clearPrefix(codec, frame).length;
    const sealed = await encryptFrame(codec, frame, ctx, 5n);
    assert.equal(sealed.ok, true);
    assert.equal(hex(sealed.data.subarray(0, prefix)), hex(frame.subarray(0, prefix)), "prefix in clear");
    assert.notEqual(hex(sealed.data.subarray(prefix)).indexOf(hex(frame.subarray(prefix + 4, prefix + 20))), 0);
    assert.ok(sealed.data.length >= frame.length + 16 + 3);
    const opened = await decryptFrame(codec, sealed.data, finder(ctx));
    assert.equal(opened.status, "ok");
    assert.equal(opened.kid, 0x1234n);
    assert.equal(hex(opened.data), hex(frame));
  });
}

test("H.264: no start code inside the encrypted part, and 4-byte start codes on receipt still open", async () => {
  const ctx = await context();
  for (let ctr = 0n; ctr < 40n; ctr++) {
    const sealed = await encryptFrame("h264", H264_KEY, ctx, ctr);
    const prefix = clearPrefix("h264", H264_KEY).length;
    const codes = findStartCodes(sealed.data);
    assert.ok(codes.every((c) => c.at <= prefix), "start codes only in the clear prefix");
    // a receiver's depacketizer writes 00 00 00 01 before every NAL unit
    const rewritten = bytes(hex(sealed.data).replace("00000168ce", "0000000168ce").replace("0000016588", "000000016588"));
    const opened = await decryptFrame("h264", rewritten, finder(ctx));
    assert.equal(opened.status, "ok");
    assert.equal(hex(opened.data), hex(H264_KEY).replace("00000168ce", "0000000168ce").replace("0000016588", "000000016588"));
  }
});

test("tampering with the clear prefix, header or ciphertext is a bad frame; no key is no key", async () => {
  const ctx = await context();
  const sealed = (await encryptFrame("vp8", VP8_KEY, ctx, 9n)).data;
  for (const at of [1, 6, 9, 10, 12, sealed.length - 1]) {
    const bad = Uint8Array.from(sealed);
    bad[at] ^= 0x04;
    const result = await decryptFrame("vp8", bad, finder(ctx));
    assert.ok(["bad_frame", "no_key"].includes(result.status), `byte ${at}`);
    assert.equal(result.data, undefined);
  }
  const flipped = Uint8Array.from(sealed);
  flipped[0] ^= 0x01; // keyframe bit: the prefix length changes
  assert.notEqual((await decryptFrame("vp8", flipped, finder(ctx))).status, "ok");
  assert.deepEqual(await decryptFrame("vp8", sealed, async () => null), { status: "no_key", kid: 0x1234n });
  assert.notEqual((await decryptFrame("vp8", VP8_DELTA, finder(ctx))).status, "ok", "a frame in clear");
  assert.deepEqual(await decryptFrame("vp9", sealed, finder(ctx)), { status: "unsupported_codec" });
  const opus = (await encryptFrame("opus", OPUS, ctx, 1n)).data;
  assert.equal((await decryptFrame("vp8", opus, finder(ctx))).status === "ok", false, "wrong codec");
});

test("frames that cannot be encrypted are refused, never passed through", async () => {
  const ctx = await context();
  assert.deepEqual(await encryptFrame("vp9", VP8_KEY, ctx, 0n), { ok: false, reason: "unsupported_codec" });
  assert.deepEqual(await encryptFrame("vp8", VP8_KEY.subarray(0, 4), ctx, 0n), { ok: false, reason: "bad_frame" });
  assert.deepEqual(await encryptFrame("h264", filler(40), ctx, 0n), { ok: false, reason: "bad_frame" });
});
