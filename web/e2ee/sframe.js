// SFrame (RFC 9605) with the one cipher suite this client uses: AES_128_GCM_SHA256_128 (0x0004).
//
// Pure functions over bytes and WebCrypto (`globalThis.crypto.subtle`, in browsers, workers and
// Node 20). KID and CTR are BigInt in parsed headers (both are 64-bit on the wire); the encoders
// accept a number or a BigInt.
//
//   header     = config byte ‖ KID bytes? ‖ CTR bytes?            (RFC 9605 §4.3)
//   key, salt  = HKDF-SHA256(base_key, "SFrame 1.0 Secret key|salt " ‖ KID(8) ‖ suite(2))
//   nonce      = salt XOR CTR (big-endian, left-padded to 12 bytes)
//   ciphertext = header ‖ AES-GCM(key, nonce, aad = header ‖ metadata, plaintext) (16-byte tag)

export const SUITE_AES_128_GCM_SHA256_128 = 0x0004;
export const KEY_LENGTH = 16;
export const NONCE_LENGTH = 12;
export const TAG_LENGTH = 16;
/** The longest possible header: config byte, 8 KID bytes, 8 CTR bytes. */
export const MAX_HEADER_LENGTH = 17;

const UINT64_MAX = (1n << 64n) - 1n;
const KEY_LABEL = new TextEncoder().encode("SFrame 1.0 Secret key ");
const SALT_LABEL = new TextEncoder().encode("SFrame 1.0 Secret salt ");

function subtle() {
  return globalThis.crypto.subtle;
}

function toUint64(value, what) {
  const big = typeof value === "bigint" ? value : BigInt(value);
  if (big < 0n || big > UINT64_MAX) throw new RangeError(`${what} is not a 64-bit unsigned integer`);
  return big;
}

/** Minimal big-endian bytes of a non-negative BigInt (at least one byte). */
function compactBytes(value) {
  const out = [];
  let rest = value;
  do {
    out.unshift(Number(rest & 0xffn));
    rest >>= 8n;
  } while (rest > 0n);
  return out;
}

function readUint(bytes, offset, length) {
  let value = 0n;
  for (let i = 0; i < length; i++) value = (value << 8n) | BigInt(bytes[offset + i]);
  return value;
}

/** The 8-byte big-endian encoding of a 64-bit value. */
export function uint64Bytes(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, toUint64(value, "value"));
  return out;
}

export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The SFrame header for this KID and CTR, each in its shortest form. */
export function encodeHeader(kid, ctr) {
  const k = toUint64(kid, "KID");
  const c = toUint64(ctr, "CTR");
  let config = 0;
  const tail = [];
  if (k < 8n) {
    config |= Number(k) << 4;
  } else {
    const bytes = compactBytes(k);
    config |= 0x80 | ((bytes.length - 1) << 4);
    tail.push(...bytes);
  }
  if (c < 8n) {
    config |= Number(c);
  } else {
    const bytes = compactBytes(c);
    config |= 0x08 | (bytes.length - 1);
    tail.push(...bytes);
  }
  return Uint8Array.from([config, ...tail]);
}

/**
 * Parses the header at `offset`: `{kid, ctr, length}` (BigInt KID and CTR, header length in
 * bytes), or null when the bytes are too short or not in the shortest form the RFC requires.
 */
export function parseHeader(bytes, offset = 0) {
  if (offset >= bytes.length) return null;
  const config = bytes[offset];
  let at = offset + 1;
  let kid = BigInt((config >> 4) & 0x07);
  if (config & 0x80) {
    const length = Number(kid) + 1;
    if (at + length > bytes.length) return null;
    kid = readUint(bytes, at, length);
    at += length;
    if (kid < 8n || compactBytes(kid).length !== length) return null;
  }
  let ctr = BigInt(config & 0x07);
  if (config & 0x08) {
    const length = Number(ctr) + 1;
    if (at + length > bytes.length) return null;
    ctr = readUint(bytes, at, length);
    at += length;
    if (ctr < 8n || compactBytes(ctr).length !== length) return null;
  }
  return { kid, ctr, length: at - offset };
}

/** The RFC's HKDF labels for this KID (`sframe_key_label`, `sframe_salt_label`). */
export function derivationLabels(kid) {
  const suffix = concatBytes(uint64Bytes(kid), Uint8Array.of(0x00, SUITE_AES_128_GCM_SHA256_128));
  return { keyLabel: concatBytes(KEY_LABEL, suffix), saltLabel: concatBytes(SALT_LABEL, suffix) };
}

/** HKDF-SHA256 with an empty salt: `length` bytes of output keying material. */
export async function hkdfSha256(secret, info, length, salt = new Uint8Array(0)) {
  const material = await subtle().importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const bits = await subtle().deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, material, length * 8);
  return new Uint8Array(bits);
}

/** `derive_key_salt(KID, base_key)` of RFC 9605 §4.4.2: raw `{key, salt}` bytes. */
export async function deriveKeySalt(baseKey, kid) {
  const { keyLabel, saltLabel } = derivationLabels(kid);
  const [key, salt] = await Promise.all([
    hkdfSha256(baseKey, keyLabel, KEY_LENGTH),
    hkdfSha256(baseKey, saltLabel, NONCE_LENGTH),
  ]);
  return { key, salt };
}

/**
 * An SFrame key context for one KID: `{kid (BigInt), cryptoKey (non-extractable AES-GCM), salt}`.
 * Build one per (base key, KID) and reuse it for every frame.
 */
export async function importSFrameKey(baseKey, kid) {
  const { key, salt } = await deriveKeySalt(baseKey, kid);
  const cryptoKey = await subtle().importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
  key.fill(0);
  return { kid: toUint64(kid, "KID"), cryptoKey, salt };
}

/** `salt XOR CTR`, the CTR big-endian and left-padded to the nonce length. */
export function frameNonce(salt, ctr) {
  const nonce = Uint8Array.from(salt);
  const counter = uint64Bytes(ctr);
  for (let i = 0; i < 8; i++) nonce[NONCE_LENGTH - 8 + i] ^= counter[i];
  return nonce;
}

/** SFrame `encrypt(CTR, KID, metadata, plaintext)`: `header ‖ ciphertext ‖ tag`. */
export async function sframeEncrypt(context, ctr, metadata, plaintext) {
  const header = encodeHeader(context.kid, ctr);
  const sealed = await subtle().encrypt(
    {
      name: "AES-GCM",
      iv: frameNonce(context.salt, ctr),
      additionalData: concatBytes(header, metadata),
      tagLength: TAG_LENGTH * 8,
    },
    context.cryptoKey,
    plaintext,
  );
  return concatBytes(header, new Uint8Array(sealed));
}

/**
 * SFrame `decrypt(metadata, sframe_ciphertext)` once the caller has parsed the header and found
 * the context of its KID. Returns the plaintext, or null when authentication fails.
 */
export async function sframeDecrypt(context, parsedHeader, metadata, sframeBytes) {
  if (parsedHeader.kid !== context.kid) return null;
  const header = sframeBytes.subarray(0, parsedHeader.length);
  const body = sframeBytes.subarray(parsedHeader.length);
  if (body.length < TAG_LENGTH) return null;
  try {
    const plain = await subtle().decrypt(
      {
        name: "AES-GCM",
        iv: frameNonce(context.salt, parsedHeader.ctr),
        additionalData: concatBytes(header, metadata),
        tagLength: TAG_LENGTH * 8,
      },
      context.cryptoKey,
      body,
    );
    return new Uint8Array(plain);
  } catch {
    return null;
  }
}
