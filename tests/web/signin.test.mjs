// Single sign-on from the meeting page: when to leave for the sign-in, and never in a loop.
import assert from "node:assert/strict";
import test from "node:test";

import { fetchSignInState, mayTrySignIn, noteSignInDone, noteSignInTried, signedInHere, signInCures, signInUrl } from "../../web/signin.js";

function memoryStorage() {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, String(v)), removeItem: (k) => items.delete(k) };
}

test("a missing link, or an expired one from a sign-in, sends the official to sign in", () => {
  assert.equal(signInCures("missing"), true);
  assert.equal(signInCures("expired", { signedInHere: true }), true);
  assert.equal(signInCures("expired"), false); // a guest's link from an organiser
  for (const problem of [null, "malformed", "wrong_room", "revoked"]) {
    assert.equal(signInCures(problem, { signedInHere: true }), false);
  }
  assert.equal(signInUrl("rapat eselon"), "/auth/sign-in/rapat%20eselon");
});

test("a sign-in that brought no usable token is not tried again for the same room within a minute", () => {
  const storage = memoryStorage();
  assert.equal(mayTrySignIn(storage, "board", 1_000), true);
  noteSignInTried(storage, "board", 1_000);
  assert.equal(signedInHere(storage, "board"), false);
  assert.equal(mayTrySignIn(storage, "board", 59_000), false);
  assert.equal(mayTrySignIn(storage, "other", 59_000), true);
  assert.equal(mayTrySignIn(storage, "board", 61_000), true);
  assert.equal(mayTrySignIn(null, "board", 1_000), true);
});

test("a sign-in that brought a usable token may be followed by another at once", () => {
  const storage = memoryStorage();
  noteSignInDone(storage, "board"); // a link, not a sign-in
  assert.equal(signedInHere(storage, "board"), false);
  noteSignInTried(storage, "board", 1_000);
  noteSignInDone(storage, "board");
  assert.equal(signedInHere(storage, "board"), true);
  assert.equal(mayTrySignIn(storage, "board", 2_000), true);
});

test("sign-in is offered only when the server says so, with who is signed in", async () => {
  const answer = (status, body) => async () => ({ ok: status === 200, json: async () => body });
  const none = { offered: false, signedIn: null };
  assert.deepEqual(await fetchSignInState({ fetchFn: answer(200, { sso: true, signed_in: null }) }), { offered: true, signedIn: null });
  const who = { identity: "ana@kominfo.go.id", name: "Ana" };
  assert.deepEqual(await fetchSignInState({ fetchFn: answer(200, { sso: true, signed_in: who }) }), { offered: true, signedIn: who });
  assert.deepEqual(await fetchSignInState({ fetchFn: answer(200, { sso: true, signed_in: { identity: 1 } }) }), { offered: true, signedIn: null });
  assert.deepEqual(await fetchSignInState({ fetchFn: answer(200, { sso: false }) }), none);
  assert.deepEqual(await fetchSignInState({ fetchFn: answer(404, null) }), none);
  assert.deepEqual(await fetchSignInState({ fetchFn: async () => { throw new TypeError("offline"); } }), none);
  const never = (_url, { signal }) => new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(new Error("aborted"))));
  assert.deepEqual(await fetchSignInState({ fetchFn: never, timeoutMs: 10 }), none);
});
