// Single sign-on from the meeting page: when to leave for the sign-in, and never in a loop.
import assert from "node:assert/strict";
import test from "node:test";

import { mayTrySignIn, noteSignInTried, signInCures, signInOffered, signInUrl } from "../../web/signin.js";

function memoryStorage() {
  const items = new Map();
  return { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, String(v)) };
}

test("a missing or expired link sends the official to sign in; other problems do not", () => {
  assert.equal(signInCures("missing"), true);
  assert.equal(signInCures("expired"), true);
  for (const problem of [null, "malformed", "wrong_room", "revoked"]) assert.equal(signInCures(problem), false);
  assert.equal(signInUrl("rapat eselon"), "/auth/sign-in/rapat%20eselon");
});

test("a sign-in is not tried again for the same room within a minute", () => {
  const storage = memoryStorage();
  assert.equal(mayTrySignIn(storage, "board", 1_000), true);
  noteSignInTried(storage, "board", 1_000);
  assert.equal(mayTrySignIn(storage, "board", 59_000), false);
  assert.equal(mayTrySignIn(storage, "other", 59_000), true);
  assert.equal(mayTrySignIn(storage, "board", 61_000), true);
  assert.equal(mayTrySignIn(null, "board", 1_000), true);
});

test("sign-in is offered only when the server says so", async () => {
  const answer = (status, body) => async () => ({ ok: status === 200, json: async () => body });
  assert.equal(await signInOffered({ fetchFn: answer(200, { sso: true, signed_in: null }) }), true);
  assert.equal(await signInOffered({ fetchFn: answer(200, { sso: false }) }), false);
  assert.equal(await signInOffered({ fetchFn: answer(404, null) }), false);
  assert.equal(await signInOffered({ fetchFn: async () => { throw new TypeError("offline"); } }), false);
  const never = (_url, { signal }) => new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(new Error("aborted"))));
  assert.equal(await signInOffered({ fetchFn: never, timeoutMs: 10 }), false);
});
