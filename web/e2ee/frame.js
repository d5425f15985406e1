// Encoded frames under SFrame: a codec-aware clear prefix the forwarding server and the browsers'
// packetizers need, then the SFrame header, ciphertext and tag.
//
//   encrypted frame = clear prefix ‖ SFrame header ‖ ciphertext ‖ tag
//   SFrame metadata (authenticated, not encrypted) = the clear prefix, in canonical form
//
// Clear prefix per codec (see docs/E2EE.md for why):
//   VP8   10 bytes on keyframes (frame tag, start code, dimensions), 3 bytes otherwise (frame tag,
//         whose lowest bit is the inverse keyframe flag).
//   Opus  1 byte, the TOC.
//   H.264 (Annex B) every NAL unit before the first slice, whole with its start code (AUD, SPS,
//         PPS, SEI), then the first slice's start code, its NAL header and the next 4 bytes
//         (first_mb_in_slice, slice_type and pic_parameter_set_id, which receivers parse). The
//         rest is encrypted, and the SFrame part is escaped with emulation-prevention bytes so that
//         no start code appears in it. The metadata lists the prefix's NAL units each behind a
//         4-byte start code, so that a receiver rewriting 3-byte start codes still authenticates.
//   VP9, AV1 and anything else: refused ("unsupported_codec"); the caller drops the frame.

import { concatBytes, parseHeader, sframeDecrypt, sframeEncrypt } from "./sframe.js";

export const VP8_KEYFRAME_PREFIX = 10;
export const VP8_DELTA_PREFIX = 3;
export const OPUS_PREFIX = 1;
/** Bytes of the first slice kept in clear after its NAL header. */
export const H264_SLICE_HEADER_BYTES = 4;

const START_CODE = Uint8Array.of(0, 0, 0, 1);

/** "video/VP8" / "VP8" / "audio/opus" → "vp8" / "opus"; "" for nothing. */
export function codecFromMimeType(mimeType) {
  if (typeof mimeType !== "string") return "";
  const name = mimeType.includes("/") ? mimeType.slice(mimeType.indexOf("/") + 1) : mimeType;
  return name.trim().toLowerCase();
}

export function isSupportedCodec(codec) {
  return codec === "vp8" || codec === "h264" || codec === "opus";
}

/** Start codes in `data`: `[{at, size}]`, `at` the index of the first NAL byte after it. */
export function findStartCodes(data, from = 0, stopAt = data.length) {
  const found = [];
  for (let i = from; i + 2 < stopAt; i++) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1) {
      const size = i > from && data[i - 1] === 0 ? 4 : 3;
      found.push({ at: i + 3, size });
      i += 2;
    }
  }
  return found;
}

function isSliceType(nalType) {
  return nalType >= 1 && nalType <= 5;
}

/**
 * The H.264 clear prefix: `{length, metadata}` or null when the frame has no slice NAL unit with
 * enough bytes. Only the prefix region is read, so this works on plain and encrypted frames alike.
 */
export function h264ClearPrefix(data) {
  const units = [];
  let i = 0;
  while (i + 2 < data.length) {
    if (!(data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1)) {
      i++;
      continue;
    }
    const start = i + 3;
    if (start >= data.length) return null;
    if (isSliceType(data[start] & 0x1f)) {
      const end = start + 1 + H264_SLICE_HEADER_BYTES;
      if (end > data.length) return null;
      units.push(data.subarray(start, end));
      return { length: end, metadata: concatBytes(...units.flatMap((u) => [START_CODE, u])) };
    }
    let next = start;
    while (next + 2 < data.length && !(data[next] === 0 && data[next + 1] === 0 && data[next + 2] === 1)) next++;
    if (next + 2 >= data.length) return null;
    let end = next;
    while (end > start && data[end - 1] === 0) end--;
    units.push(data.subarray(start, end));
    i = next;
  }
  return null;
}

/**
 * The clear prefix of a frame of `codec`: `{length, metadata}`, or `{error}` with
 * "unsupported_codec" or "bad_frame" (too short for its codec's rule).
 */
export function clearPrefix(codec, data) {
  if (codec === "vp8") {
    if (data.length < 1) return { error: "bad_frame" };
    const length = (data[0] & 0x01) === 0 ? VP8_KEYFRAME_PREFIX : VP8_DELTA_PREFIX;
    if (data.length < length) return { error: "bad_frame" };
    return { length, metadata: data.subarray(0, length) };
  }
  if (codec === "opus") {
    if (data.length < OPUS_PREFIX) return { error: "bad_frame" };
    return { length: OPUS_PREFIX, metadata: data.subarray(0, OPUS_PREFIX) };
  }
  if (codec === "h264") return h264ClearPrefix(data) ?? { error: "bad_frame" };
  return { error: "unsupported_codec" };
}

function trailingZeros(bytes) {
  let n = 0;
  for (let i = bytes.length - 1; i >= 0 && n < 2 && bytes[i] === 0; i--) n++;
  return n;
}

/**
 * H.264 emulation prevention over `bytes`: 0x03 after two zeros when the next byte is 0..3 or the
 * data ends. `zerosBefore` carries the zero run of the bytes in front.
 */
export function escapeEmulation(bytes, zerosBefore = 0) {
  const out = new Uint8Array(bytes.length + Math.ceil(bytes.length / 2) + 1);
  let n = 0;
  let zeros = zerosBefore;
  for (const byte of bytes) {
    if (zeros >= 2 && byte <= 3) {
      out[n++] = 3;
      zeros = 0;
    }
    out[n++] = byte;
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  if (zeros >= 2) out[n++] = 3;
  return out.slice(0, n);
}

/** The inverse of `escapeEmulation`. */
export function unescapeEmulation(bytes, zerosBefore = 0) {
  const out = new Uint8Array(bytes.length);
  let n = 0;
  let zeros = zerosBefore;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === 3 && zeros >= 2 && (i + 1 === bytes.length || bytes[i + 1] <= 3)) {
      zeros = 0;
      continue;
    }
    out[n++] = byte;
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  return out.slice(0, n);
}

/**
 * Encrypts one encoded frame with an SFrame key context (sframe.js `importSFrameKey`) and counter.
 * Returns `{ok: true, data}` or `{ok: false, reason: "unsupported_codec" | "bad_frame"}`; a frame
 * that cannot be encrypted must be dropped, never sent in clear.
 */
export async function encryptFrame(codec, data, context, ctr) {
  const prefix = clearPrefix(codec, data);
  if (prefix.error) return { ok: false, reason: prefix.error };
  const clear = data.subarray(0, prefix.length);
  const sealed = await sframeEncrypt(context, ctr, prefix.metadata, data.subarray(prefix.length));
  const body = codec === "h264" ? escapeEmulation(sealed, trailingZeros(clear)) : sealed;
  return { ok: true, data: concatBytes(clear, body) };
}

/**
 * Reads an encrypted frame's clear prefix and SFrame header without a key:
 * `{prefix, metadata, header: {kid, ctr, length}, sframe}` or `{error}`.
 */
export function readEncryptedFrame(codec, data) {
  const prefix = clearPrefix(codec, data);
  if (prefix.error) return { error: prefix.error };
  const clear = data.subarray(0, prefix.length);
  const rest = data.subarray(prefix.length);
  const sframe = codec === "h264" ? unescapeEmulation(rest, trailingZeros(clear)) : rest;
  const header = parseHeader(sframe);
  if (header === null) return { error: "bad_frame" };
  return { prefix: clear, metadata: prefix.metadata, header, sframe };
}

/** Decrypts a frame read by `readEncryptedFrame` with the context of its KID: bytes or null. */
export async function openEncryptedFrame(read, context) {
  const plain = await sframeDecrypt(context, read.header, read.metadata, read.sframe);
  return plain === null ? null : concatBytes(read.prefix, plain);
}

/**
 * One-shot decryption: `findContext(kid)` gives the context for a BigInt KID or null. Returns
 * `{status: "ok", data, kid}`, `{status: "no_key", kid}`, or `{status: "bad_frame" |
 * "unsupported_codec"}`; only "ok" carries bytes for the decoder.
 */
export async function decryptFrame(codec, data, findContext) {
  const read = readEncryptedFrame(codec, data);
  if (read.error) return { status: read.error };
  const context = await findContext(read.header.kid);
  if (!context) return { status: "no_key", kid: read.header.kid };
  const plain = await openEncryptedFrame(read, context);
  if (plain === null) return { status: "bad_frame" };
  return { status: "ok", data: plain, kid: read.header.kid };
}
