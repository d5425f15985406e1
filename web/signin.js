// Single sign-on from the meeting page: when the page has no usable join token and the server
// offers sign-in, the browser goes to /auth/sign-in/ROOM (the server sends it on to the identity
// provider and back to this page with a join token in the fragment). No DOM code here.

export const SESSION_TIMEOUT_MS = 3000;
export const RETRY_AFTER_MS = 60_000;
const TRIED_KEY = "conf.sso.tried.";

/** Token problems that signing in can cure: no token at all, or an expired one. */
export function signInCures(problem) {
  return problem === "missing" || problem === "expired";
}

export function signInUrl(room) {
  return `/auth/sign-in/${encodeURIComponent(room)}`;
}

/** Whether the server offers single sign-on (false when it does not say so in time). */
export async function signInOffered({ fetchFn = globalThis.fetch, timeoutMs = SESSION_TIMEOUT_MS } = {}) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const resp = await fetchFn("/auth/session", { credentials: "same-origin", signal: abort.signal });
    if (!resp.ok) return false;
    const body = await resp.json();
    return Boolean(body && body.sso === true);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Whether to leave for the sign-in now. Not when it was tried for this room within the last
 * minute: a sign-in that brings back an unusable token (a clock far off) must not loop.
 */
export function mayTrySignIn(storage, room, nowMs) {
  const last = Number(storage?.getItem(TRIED_KEY + room));
  return !(Number.isFinite(last) && last > 0 && nowMs - last < RETRY_AFTER_MS);
}

export function noteSignInTried(storage, room, nowMs) {
  try {
    storage?.setItem(TRIED_KEY + room, String(nowMs));
  } catch {
    // storage full or refused: the guard is a courtesy, the server decides anyway
  }
}
