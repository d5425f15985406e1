// Identity keys, sealed media-key blobs, the KID scheme and the media-key ratchet.
//
// Identity: an ECDH P-256 key pair made in WebCrypto; the private key is not extractable, the
// public key travels as its 65-byte uncompressed point in base64url (87 characters).
//
// A sender's media key reaches one recipient as a blob (base64url, 71 characters):
//   version 0x01 ‖ nonce (12) ‖ AES-128-GCM(pair key, nonce, aad = version, KID (8) ‖ secret (16))
//   pair key = HKDF-SHA256(ECDH x-coordinate, salt = "", info = BLOB_LABEL ‖ sender ‖ recipient, 16)
// where sender and recipient are each sid ‖ identity ‖ public key, every field behind a 2-byte
// length. Only the two holders of the private keys can make or open it, and the direction is bound,
// so a recipient that opens it knows which sender it came from (given the sender's true public key,
// which the safety code checks).
//
// KID = epoch × 256 + step. A fresh random secret starts a new epoch at step 0; a join ratchets
// the secret to the next step: secret(step + 1) = HKDF-SHA256(secret(step), RATCHET_LABEL, 16).
// Epochs start at a random value, so a sender that comes back with the same sid does not reuse KIDs.

import { concatBytes, hkdfSha256, uint64Bytes } from "./sframe.js";

export const SECRET_LENGTH = 16;
export const BLOB_VERSION = 1;
export const BLOB_LENGTH = 1 + 12 + 8 + SECRET_LENGTH + 16;
export const PUBLIC_KEY_LENGTH = 65;
export const MAX_STEP = 255;
export const MAX_EPOCH = 2 ** 40;

const BLOB_LABEL = new TextEncoder().encode("conf-e2ee key blob v1");
const RATCHET_LABEL = new TextEncoder().encode("conf-e2ee ratchet v1");
const ECDH = { name: "ECDH", namedCurve: "P-256" };

function subtle(crypto) {
  return (crypto ?? globalThis.crypto).subtle;
}

export function toBase64Url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Bytes of a base64url string (no padding), or null for anything else. */
export function fromBase64Url(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

export function makeKid(epoch, step) {
  if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch >= MAX_EPOCH) throw new RangeError("bad epoch");
  if (!Number.isInteger(step) || step < 0 || step > MAX_STEP) throw new RangeError("bad step");
  return epoch * 256 + step;
}

/** `{epoch, step}` of a KID (number or BigInt), or null when it is beyond this scheme's range. */
export function splitKid(kid) {
  const big = BigInt(kid);
  if (big < 0n || big >= BigInt(MAX_EPOCH) * 256n) return null;
  return { epoch: Number(big >> 8n), step: Number(big & 0xffn) };
}

/** The next step's secret. */
export function ratchetSecret(secret) {
  return hkdfSha256(secret, RATCHET_LABEL, SECRET_LENGTH);
}

/** A fresh identity: `{privateKey (non-extractable CryptoKey), publicKeyRaw, publicKey (base64url)}`. */
export async function generateIdentity(crypto) {
  const pair = await subtle(crypto).generateKey(ECDH, false, ["deriveBits"]);
  const publicKeyRaw = new Uint8Array(await subtle(crypto).exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicKeyRaw, publicKey: toBase64Url(publicKeyRaw) };
}

/** A peer's announced public key: `{raw, cryptoKey}`, or null when it is not a P-256 point. */
export async function importPublicKey(text, crypto) {
  const raw = fromBase64Url(text);
  if (raw === null || raw.length !== PUBLIC_KEY_LENGTH || raw[0] !== 0x04) return null;
  try {
    const cryptoKey = await subtle(crypto).importKey("raw", raw, ECDH, true, []);
    return { raw, cryptoKey };
  } catch {
    return null;
  }
}

function lengthPrefixed(bytes) {
  if (bytes.length > 0xffff) throw new RangeError("field too long");
  return concatBytes(Uint8Array.of(bytes.length >> 8, bytes.length & 0xff), bytes);
}

function partyBytes(party) {
  const enc = new TextEncoder();
  return concatBytes(
    lengthPrefixed(enc.encode(party.sid)),
    lengthPrefixed(enc.encode(party.identity)),
    lengthPrefixed(party.publicKeyRaw),
  );
}

/** The HKDF info binding a blob to its direction: label ‖ sender ‖ recipient. */
export function pairInfo(sender, recipient) {
  return concatBytes(BLOB_LABEL, partyBytes(sender), partyBytes(recipient));
}

async function ecdhSecret(myPrivateKey, theirPublicKey, crypto) {
  return new Uint8Array(await subtle(crypto).deriveBits({ name: "ECDH", public: theirPublicKey }, myPrivateKey, 256));
}

async function pairKeyFrom(shared, sender, recipient, crypto) {
  const raw = await hkdfSha256(shared, pairInfo(sender, recipient), 16);
  const key = await subtle(crypto).importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  raw.fill(0);
  return key;
}

/**
 * The AES-GCM key for blobs from `sender` to `recipient` (each `{sid, identity, publicKeyRaw}`),
 * from my private key and the other side's public CryptoKey. The same key comes out on both sides.
 */
export async function derivePairKey(myPrivateKey, theirPublicKey, sender, recipient, crypto) {
  const shared = await ecdhSecret(myPrivateKey, theirPublicKey, crypto);
  const key = await pairKeyFrom(shared, sender, recipient, crypto);
  shared.fill(0);
  return key;
}

/** Both directions between `me` and `them` with one ECDH: `{sendKey, receiveKey}`. */
export async function derivePairKeys(myPrivateKey, theirPublicKey, me, them, crypto) {
  const shared = await ecdhSecret(myPrivateKey, theirPublicKey, crypto);
  const sendKey = await pairKeyFrom(shared, me, them, crypto);
  const receiveKey = await pairKeyFrom(shared, them, me, crypto);
  shared.fill(0);
  return { sendKey, receiveKey };
}

/** Seals `{kid, secret}` under a pair key: the base64url blob. `nonce` is for tests only. */
export async function sealKeyBlob(pairKey, kid, secret, { crypto, nonce } = {}) {
  if (secret.length !== SECRET_LENGTH) throw new RangeError("bad secret length");
  const iv = nonce ?? (crypto ?? globalThis.crypto).getRandomValues(new Uint8Array(12));
  const version = Uint8Array.of(BLOB_VERSION);
  const sealed = await subtle(crypto).encrypt(
    { name: "AES-GCM", iv, additionalData: version },
    pairKey,
    concatBytes(uint64Bytes(kid), secret),
  );
  return toBase64Url(concatBytes(version, iv, new Uint8Array(sealed)));
}

/** Opens a blob: `{kid (number), secret}` or null (malformed, wrong pair, tampered, bad KID). */
export async function openKeyBlob(pairKey, text, crypto) {
  const blob = fromBase64Url(text);
  if (blob === null || blob.length !== BLOB_LENGTH || blob[0] !== BLOB_VERSION) return null;
  let plain;
  try {
    plain = new Uint8Array(
      await subtle(crypto).decrypt(
        { name: "AES-GCM", iv: blob.subarray(1, 13), additionalData: blob.subarray(0, 1) },
        pairKey,
        blob.subarray(13),
      ),
    );
  } catch {
    return null;
  }
  const kid = new DataView(plain.buffer).getBigUint64(0);
  if (splitKid(kid) === null) return null;
  return { kid: Number(kid), secret: plain.slice(8) };
}

export { KeyManager, DEFAULT_OPTIONS } from "./keymanager.js";
