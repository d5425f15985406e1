// The join token as the page sees it. No DOM code here.
//
// The payload is decoded for display only (name, role, permissions, expiry): the signature is
// checked by the server, never here, and nothing the page decides from it grants anything.

const MAX_TOKEN_CHARS = 8192;
const TOKEN_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

function base64UrlDecode(segment) {
  const b64 = segment.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (segment.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

/** The token's claims, or null when it is not a well-formed join token. */
export function decodeJoinToken(token) {
  if (typeof token !== "string" || token.length > MAX_TOKEN_CHARS || !TOKEN_RE.test(token)) return null;
  let payload;
  try {
    payload = JSON.parse(base64UrlDecode(token.split(".")[1]));
  } catch {
    return null;
  }
  if (!payload || typeof payload !== "object" || typeof payload.sub !== "string" || typeof payload.room !== "string") {
    return null;
  }
  const perms = Array.isArray(payload.perms) ? payload.perms.filter((p) => typeof p === "string") : null;
  return {
    identity: payload.sub,
    name: typeof payload.name === "string" && payload.name.trim() ? payload.name.trim() : payload.sub,
    room: payload.room,
    role: typeof payload.role === "string" ? payload.role : "participant",
    permissions: perms ?? defaultPermissions(payload.role),
    expiresAt: Number.isFinite(payload.exp) ? payload.exp : null,
    notBefore: Number.isFinite(payload.nbf) ? payload.nbf : null,
  };
}

/** The permissions a role has when the token lists none (as the server decides). */
export function defaultPermissions(role) {
  if (role === "moderator") {
    return ["publish_audio", "publish_video", "publish_screen", "subscribe", "chat", "moderate", "update_name"];
  }
  if (role === "viewer") return ["subscribe", "chat"];
  return ["publish_audio", "publish_video", "publish_screen", "subscribe", "chat"];
}

/**
 * Why this token cannot work on this page, judged before contacting the server so the user gets a
 * friendly message: "missing", "malformed", "wrong_room", "expired", or null when it looks usable.
 * `leewaySeconds` forgives a slightly wrong clock (the server is the judge either way).
 */
export function tokenProblem(token, claims, room, nowMs, leewaySeconds = 30) {
  if (!token) return "missing";
  if (!claims) return "malformed";
  if (room && claims.room !== room) return "wrong_room";
  if (claims.expiresAt !== null && claims.expiresAt * 1000 < nowMs - leewaySeconds * 1000) return "expired";
  return null;
}
