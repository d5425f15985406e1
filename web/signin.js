// Single sign-on from the meeting page: when the page has no usable join token and the server
// offers sign-in, the browser goes to /auth/sign-in/ROOM (the server sends it on to the identity
// provider and back to this page with a join token in the fragment). No DOM code here.

export const SESSION_TIMEOUT_MS = 3000;
export const RETRY_AFTER_MS = 60_000;
const TRIED_KEY = "conf.sso.tried.";
const VIA_KEY = "conf.sso.via.";

/**
 * Token problems that signing in can cure: no token at all, or an expired one that an earlier
 * sign-in in this tab gave (an expired link from an organiser is a guest's: they cannot sign in).
 */
export function signInCures(problem, { signedInHere = false } = {}) {
  return problem === "missing" || (problem === "expired" && signedInHere);
}

export function signInUrl(room) {
  return `/auth/sign-in/${encodeURIComponent(room)}`;
}

const NOT_OFFERED = Object.freeze({ offered: false, signedIn: null });

/**
 * Whether the server offers single sign-on, and who is signed in on this browser
 * (`{offered, signedIn: {identity, name} | null}`); not offered when the server does not say in time.
 */
export async function fetchSignInState({ fetchFn = globalThis.fetch, timeoutMs = SESSION_TIMEOUT_MS } = {}) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const resp = await fetchFn("/auth/session", { credentials: "same-origin", signal: abort.signal });
    if (!resp.ok) return NOT_OFFERED;
    const body = await resp.json();
    if (!body || body.sso !== true) return NOT_OFFERED;
    const who = body.signed_in;
    const signedIn = who && typeof who.identity === "string" && typeof who.name === "string" ? { identity: who.identity, name: who.name } : null;
    return { offered: true, signedIn };
  } catch {
    return NOT_OFFERED;
  } finally {
    clearTimeout(timer);
  }
}

export const SIGN_OUT_URL = "/auth/logout";

/**
 * Whether to leave for the sign-in now. Not when it was tried for this room within the last
 * minute: a sign-in that brings back an unusable token (a clock far off) must not loop.
 */
export function mayTrySignIn(storage, room, nowMs) {
  const last = Number(storage?.getItem(TRIED_KEY + room));
  return !(Number.isFinite(last) && last > 0 && nowMs - last < RETRY_AFTER_MS);
}

/** Whether this tab's join token for the room came from a sign-in. */
export function signedInHere(storage, room) {
  return storage?.getItem(VIA_KEY + room) === "1";
}

export function noteSignInTried(storage, room, nowMs) {
  try {
    storage?.setItem(TRIED_KEY + room, String(nowMs));
  } catch {
    // storage full or refused: the guard is a courtesy, the server decides anyway
  }
}

/**
 * The page came back from a sign-in with a usable token: a later sign-in (after signing out, or
 * once this token expires) may start at once.
 */
export function noteSignInDone(storage, room) {
  if (!(Number(storage?.getItem(TRIED_KEY + room)) > 0)) return;
  try {
    storage.removeItem(TRIED_KEY + room);
    storage.setItem(VIA_KEY + room, "1");
  } catch {
    // as above
  }
}
