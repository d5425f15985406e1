// web/meeting.js without a browser: what the meeting does with what the server sends, over a
// fake signaling connection.
import assert from "node:assert/strict";
import test from "node:test";

import { CLOSE } from "../../web/protocol.js";
import { Meeting } from "../../web/meeting.js";

class FakeSignaling extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.sent = [];
    this.isOpen = false;
    this.abandoned = false;
  }

  connect() {}

  send(msg) {
    if (this.abandoned) return false;
    this.sent.push(msg);
    return true;
  }

  abandon() {
    this.abandoned = true;
  }

  close() {}

  // what the server does
  open() {
    this.isOpen = true;
    this.dispatchEvent(new CustomEvent("open"));
  }

  deliver(msg) {
    this.dispatchEvent(new CustomEvent("message", { detail: msg }));
  }

  closeWith(code) {
    this.isOpen = false;
    this.dispatchEvent(new CustomEvent("close", { detail: { code, reason: "" } }));
  }
}

const SELF = { sid: "S1", identity: "ana", name: "Ana", role: "participant", permissions: [], state: {} };
const ROOM = { name: "board", max_participants: 10, metadata: {}, locked: false };

function joinedMeeting(t) {
  const connections = [];
  const meeting = new Meeting({
    url: "wss://example.test/ws",
    room: "board",
    token: "tok",
    makeSignaling: (url) => {
      const sig = new FakeSignaling(url);
      connections.push(sig);
      return sig;
    },
  });
  const ended = [];
  meeting.addEventListener("ended", (ev) => ended.push(ev.detail));
  meeting.start({ state: { audio_muted: true, video_muted: true } });
  const sig = connections[0];
  sig.open();
  sig.deliver({ type: "joined", v: 1, sid: "S1", room: ROOM, self: SELF, participants: [], ice_servers: [] });
  t.after(() => meeting.leave());
  return { meeting, connections, ended };
}

test("joining sends the token in the join message", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections } = joinedMeeting(t);
  assert.equal(meeting.status, "joined");
  assert.deepEqual(connections[0].sent[0], {
    type: "join",
    v: 1,
    token: "tok",
    room: "board",
    state: { audio_muted: true, video_muted: true, hand_raised: false },
  });
});

test("bye from the server drops the connection and rejoins on a new one", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections, ended } = joinedMeeting(t);
  connections[0].deliver({ type: "bye" });
  assert.equal(meeting.status, "reconnecting");
  assert.equal(connections[0].abandoned, true);
  t.mock.timers.tick(1000);
  assert.equal(connections.length, 2);
  connections[1].open();
  assert.equal(connections[1].sent[0].type, "join");
  assert.deepEqual(ended, []);
});

test("bye while leaving ends the meeting as left", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections, ended } = joinedMeeting(t);
  meeting.leave();
  assert.deepEqual(connections[0].sent.at(-1), { type: "leave" });
  connections[0].deliver({ type: "bye" });
  assert.deepEqual(ended, [{ kind: "left" }]);
  assert.equal(connections.length, 1);
});

test("a server going away (close 1001) is rejoined; a removal is not", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const away = joinedMeeting(t);
  away.connections[0].closeWith(CLOSE.GOING_AWAY);
  assert.equal(away.meeting.status, "reconnecting");

  const removed = joinedMeeting(t);
  removed.connections[0].deliver({ type: "kicked", reason: "removed", message: "bye", by: "admin" });
  assert.deepEqual(removed.ended, [{ kind: "kicked", reason: "removed", message: "bye", by: "admin" }]);
});
