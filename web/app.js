// The meeting page's entry point: reads the join link, then shows the pre-join page, the meeting,
// or a page explaining why joining is not possible.

import { applyBrand, loadBrand } from "./brand.js";
import { Call } from "./call.js";
import { byId } from "./dom.js";
import { EndScreen, endScreenKey } from "./endscreen.js";
import { Translator } from "./i18n.js";
import { mountLanguagePickers } from "./langpicker.js";
import { Notices } from "./notices.js";
import { PreJoin } from "./prejoin.js";
import { takeTokenFromFragment } from "./protocol.js";
import { fetchRoomTitle, roomTitle } from "./roomtitle.js";
import {
  fetchSignInState,
  mayTrySignIn,
  noteSignInDone,
  noteSignInTried,
  SIGN_OUT_URL,
  signedInHere,
  signInCures,
  signInUrl,
} from "./signin.js";
import { decodeJoinToken, tokenProblem } from "./token.js";

// The token stays in this tab's sessionStorage so that a reload or "Rejoin" works after it was
// removed from the address bar. It is forgotten when it can no longer be used.
const TOKEN_KEY = "conf.token.";
const KEEP_TOKEN_AFTER = new Set(["left", "duplicate", "connection_lost", "unreachable", "room_full", "room_locked", "join_failed", "lobby_full", "rate_limited"]);

function session() {
  try {
    return globalThis.sessionStorage || null;
  } catch {
    return null;
  }
}

const tokens = {
  read: (room) => session()?.getItem(TOKEN_KEY + room) || null,
  keep: (room, token) => session()?.setItem(TOKEN_KEY + room, token),
  forget: (room) => session()?.removeItem(TOKEN_KEY + room),
};

function roomFromPath(pathname) {
  try {
    return decodeURIComponent(pathname.replace(/\/+$/, "").split("/").pop() || "");
  } catch {
    return "";
  }
}

async function main() {
  // First of all, take the token out of the address bar.
  const room = roomFromPath(location.pathname);
  const fromLink = takeTokenFromFragment(location, history);
  if (fromLink) tokens.keep(room, fromLink);
  const token = fromLink || tokens.read(room);
  const claims = decodeJoinToken(token);
  const problem = tokenProblem(token, claims, room, Date.now());
  const signIn = fetchSignInState();
  if (fromLink && !problem) noteSignInDone(session(), room);
  // No usable link: an official signs in at the organisation's identity provider instead.
  const cured = signInCures(problem, { signedInHere: signedInHere(session(), room) });
  if (cured && room && mayTrySignIn(session(), room, Date.now()) && (await signIn).offered) {
    noteSignInTried(session(), room, Date.now());
    tokens.forget(room);
    location.replace(signInUrl(room));
    return;
  }
  const i18n = new Translator();
  // The catalogue, the branding and the meeting's title (only for a usable link) in parallel.
  const [brand, storedTitle, , signInState] = await Promise.all([loadBrand(), problem ? null : fetchRoomTitle(room, token), i18n.init(), signIn]);
  // Signing out also forgets this tab's join token for the room (it stays valid until it expires).
  const onSignOut = signInState.signedIn
    ? () => {
        tokens.forget(room);
        location.assign(SIGN_OUT_URL);
      }
    : null;
  applyBrand(document, brand);
  mountLanguagePickers(i18n);
  const title = roomTitle({ title: storedTitle }, room);
  const endScreen = new EndScreen({ i18n, brand });
  if (problem) {
    tokens.forget(room);
    endScreen.show(endScreenKey({ kind: "token", problem }), { onSignOut });
    return;
  }
  const notices = new Notices({
    i18n,
    toasts: byId("toasts"),
    announcer: byId("announcer"),
    banner: byId("m-banner"),
    dialog: byId("dialog"),
  });
  const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  const call = new Call({
    i18n,
    brand,
    notices,
    room,
    title,
    token,
    wsUrl,
    onEnded: (reason) => {
      const key = endScreenKey(reason);
      if (!KEEP_TOKEN_AFTER.has(key)) tokens.forget(room);
      // A token from a sign-in that expired (a rejoin after a long meeting): sign in again.
      const again = signInCures(key, { signedInHere: signedInHere(session(), room) });
      if (again && signInState.offered && mayTrySignIn(session(), room, Date.now())) {
        noteSignInTried(session(), room, Date.now());
        location.replace(signInUrl(room));
        return;
      }
      const params = { by: reason.by || "" };
      endScreen.show(key, { params, onSignOut, onRetry: KEEP_TOKEN_AFTER.has(key) && tokens.read(room) ? () => location.reload() : null });
    },
  });
  const prejoin = new PreJoin({
    i18n,
    brand,
    claims,
    title,
    onJoin: (choice) => {
      prejoin.hide();
      call.start(choice);
    },
  });
  await prejoin.show();
}

main().catch((err) => {
  console.error(err);
  const view = document.getElementById("view-loading");
  if (view) view.querySelector("p").textContent = `The page could not start: ${err && err.message}`;
});
