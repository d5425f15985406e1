// The safety code (web/e2ee/safety.js).
import assert from "node:assert/strict";
import test from "node:test";

import { generateIdentity } from "../../web/e2ee/keys.js";
import { SAFETY_EMOJI, safetyCode } from "../../web/e2ee/safety.js";

async function people(n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push({ identity: `user-${i}`, key: (await generateIdentity()).publicKey });
  return out;
}

test("the emoji are 64 distinct symbols", () => {
  assert.equal(SAFETY_EMOJI.length, 64);
  assert.equal(new Set(SAFETY_EMOJI).size, 64);
});

test("everybody seeing the same keys sees the same code, in any order", async () => {
  const everyone = await people(5);
  const code = await safetyCode(everyone);
  assert.equal(code.digits.length, 5);
  assert.ok(code.digits.every((g) => /^\d{5}$/.test(g)));
  assert.equal(code.emoji.length, 4);
  assert.match(code.text, /^\d{5} \d{5} \d{5} \d{5} \d{5} \S+$/u);
  const shuffled = [everyone[3], everyone[0], everyone[4], everyone[2], everyone[1], everyone[0]];
  assert.deepEqual(await safetyCode(shuffled), code, "order and duplicates do not matter");
});

test("a substituted key, a renamed identity or a missing participant changes the code", async () => {
  const everyone = await people(4);
  const code = (await safetyCode(everyone)).text;
  const mallory = (await generateIdentity()).publicKey;
  const substituted = everyone.map((p, i) => (i === 2 ? { ...p, key: mallory } : p));
  assert.notEqual((await safetyCode(substituted)).text, code);
  const renamed = everyone.map((p, i) => (i === 1 ? { ...p, identity: "someone-else" } : p));
  assert.notEqual((await safetyCode(renamed)).text, code);
  assert.notEqual((await safetyCode(everyone.slice(1))).text, code);
});
