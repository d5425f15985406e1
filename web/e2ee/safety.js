// The meeting's safety code: everybody who sees the same participants' identity keys sees the same
// code; a server that gave someone a substituted key shows that person a different one.
//
//   entry  = len(identity) ‖ identity (UTF-8) ‖ len(key) ‖ public key (raw bytes); lengths 2 bytes
//   digest = SHA-256(SAFETY_LABEL ‖ every distinct entry, sorted bytewise)
//   digits = 5 groups: bytes 5g..5g+4 of the digest as a big-endian number, mod 100000, 5 digits
//   emoji  = 4 symbols: bytes 25..28, each mod 64, from SAFETY_EMOJI
//
// Order-independent (sorted), duplicates counted once. 25 digits carry 83 bits, far beyond what a
// server could search for while a meeting runs; the emoji are a quicker check of the same digest.

import { concatBytes } from "./sframe.js";
import { fromBase64Url } from "./keys.js";

const SAFETY_LABEL = new TextEncoder().encode("conf-e2ee safety code v1");

export const SAFETY_EMOJI = Object.freeze([
  "🐶", "🐱", "🦁", "🐴", "🦄", "🐷", "🐘", "🐰",
  "🐼", "🐓", "🐧", "🐢", "🐟", "🐙", "🦋", "🌷",
  "🌳", "🌵", "🍄", "🌏", "🌙", "☁️", "🔥", "🍌",
  "🍎", "🍓", "🌽", "🍕", "🎂", "❤️", "😀", "🤖",
  "🎩", "👓", "🔧", "🎅", "👍", "☂️", "⌛", "⏰",
  "🎁", "💡", "📕", "✏️", "📎", "✂️", "🔒", "🔑",
  "🔨", "☎️", "🏁", "🚂", "🚲", "✈️", "🚀", "🏆",
  "⚽", "🎸", "🎺", "🔔", "⚓", "🎧", "📁", "📌",
]);

function u16(n) {
  return Uint8Array.of(n >> 8, n & 0xff);
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** One participant's entry, or null when the key is not base64url or a field is too long. */
export function safetyEntry(identity, key) {
  const name = new TextEncoder().encode(String(identity ?? ""));
  const raw = fromBase64Url(key);
  if (raw === null || name.length > 0xffff || raw.length > 0xffff) return null;
  return concatBytes(u16(name.length), name, u16(raw.length), raw);
}

/** The bytes hashed for `[{identity, key}]`: label, then the distinct entries sorted. */
export function safetyInput(entries) {
  const seen = new Map();
  for (const { identity, key } of entries) {
    const entry = safetyEntry(identity, key);
    if (entry !== null) seen.set(entry.join(","), entry);
  }
  return concatBytes(SAFETY_LABEL, ...[...seen.values()].sort(compareBytes));
}

/** `{digits: ["01234", …5], emoji: [4], text: "01234 56789 … 🐶🐱🦁🐴"}` from a 32-byte digest. */
export function safetyCodeFromDigest(digest) {
  const digits = [];
  for (let g = 0; g < 5; g++) {
    let value = 0;
    for (let i = 0; i < 5; i++) value = value * 256 + digest[g * 5 + i];
    digits.push(String(value % 100000).padStart(5, "0"));
  }
  const emoji = [];
  for (let i = 25; i < 29; i++) emoji.push(SAFETY_EMOJI[digest[i] % 64]);
  return { digits, emoji, text: `${digits.join(" ")} ${emoji.join("")}` };
}

/** The safety code of `[{identity, key (base64url)}]`, this side's own entry included. */
export async function safetyCode(entries, crypto = globalThis.crypto) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", safetyInput(entries)));
  return safetyCodeFromDigest(digest);
}
