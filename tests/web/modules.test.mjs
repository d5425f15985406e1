// The client's small DOM-free modules without a browser: tokens, candidates, quality,
// subscriptions.
import assert from "node:assert/strict";
import test from "node:test";

import { candidateMessage, remoteCandidate } from "../../web/candidates.js";
import { rateQuality } from "../../web/quality.js";
import { SubscriptionPlanner } from "../../web/subscriptions.js";
import { decodeJoinToken, defaultPermissions, tokenProblem } from "../../web/token.js";

function fakeToken(claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${part({ alg: "HS256" })}.${part(claims)}.sig`;
}

test("a join token is decoded for display; a malformed one is refused", () => {
  const token = fakeToken({ sub: "ana", room: "board", name: " Ana ", role: "viewer", exp: 100 });
  const claims = decodeJoinToken(token);
  assert.deepEqual(claims, {
    identity: "ana",
    name: "Ana",
    room: "board",
    role: "viewer",
    permissions: defaultPermissions("viewer"),
    expiresAt: 100,
    notBefore: null,
  });
  assert.equal(decodeJoinToken("not-a-token"), null);
  assert.equal(decodeJoinToken(fakeToken({ room: "board" })), null);
  assert.equal(tokenProblem(token, claims, "other", 0), "wrong_room");
  assert.equal(tokenProblem(token, claims, "board", 200_000), "expired");
  assert.equal(tokenProblem(token, claims, "board", 100_000), null);
  assert.equal(tokenProblem(null, null, "board", 0), "missing");
});

test("TCP candidates are not sent; the server's candidates get an m-line index", () => {
  const udp = "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host";
  assert.deepEqual(candidateMessage("publish", { candidate: udp, protocol: "udp" }), {
    type: "ice_candidate",
    target: "publish",
    candidate: udp,
  });
  assert.equal(candidateMessage("publish", { candidate: "candidate:2 1 tcp 1 192.0.2.1 9 typ host", protocol: "tcp" }), null);
  assert.equal(candidateMessage("publish", null), null);
  assert.deepEqual(remoteCandidate(udp), { candidate: udp, sdpMLineIndex: 0 });
  assert.equal(remoteCandidate(null), null);
});

test("connection quality from round-trip time and loss", () => {
  assert.equal(rateQuality({}), "unknown");
  assert.equal(rateQuality({ rttMs: 50, lossRatio: 0 }), "good");
  assert.equal(rateQuality({ rttMs: 300 }), "fair");
  assert.equal(rateQuality({ lossRatio: 0.1 }), "poor");
});

test("subscriptions send only what changed", () => {
  const sent = [];
  const planner = new SubscriptionPlanner((m) => sent.push(m.tracks));
  planner.setVisible([{ trackId: "A", width: 320, height: 180 }]);
  assert.deepEqual(planner.flush(), [{ id: "A", subscribe: true, max_width: 320, max_height: 180 }]);
  planner.setVisible([{ trackId: "A", width: 330, height: 186 }]);
  assert.deepEqual(planner.flush(), []);
  planner.setVisible([]);
  assert.deepEqual(planner.flush(), [{ id: "A", subscribe: false }]);
  planner.close();
  assert.equal(sent.length, 2);
});
