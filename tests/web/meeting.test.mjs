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

test("a meeting moving between servers (try_again, close 1013) is rejoined, not ended", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const moving = joinedMeeting(t);
  moving.connections[0].closeWith(CLOSE.TRY_AGAIN);
  assert.equal(moving.meeting.status, "reconnecting");
  t.mock.timers.tick(10_000);
  const again = moving.connections.at(-1);
  assert.notEqual(again, moving.connections[0]);
  again.open();
  again.deliver({ type: "error", code: "try_again", message: "moving", ref: "join" });
  again.closeWith(CLOSE.TRY_AGAIN);
  assert.deepEqual(moving.ended, []);
  assert.equal(moving.meeting.status, "reconnecting");
});

function freshMeeting(t) {
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
  const events = [];
  for (const type of ["lobby", "lobby-updated", "password-needed", "ended"]) {
    meeting.addEventListener(type, (ev) => events.push([type, ev.detail]));
  }
  meeting.start({ state: {} });
  connections[0].open();
  t.after(() => meeting.leave());
  return { meeting, connections, events };
}

test("waiting in the lobby: no join deadline, then joined when admitted", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections, events } = freshMeeting(t);
  connections[0].deliver({ type: "lobby", room: { name: "board" }, self: { identity: "ana", name: "Ana" }, moderators: 0 });
  assert.equal(meeting.status, "waiting");
  assert.deepEqual(events.at(-1), ["lobby", { moderators: 0, name: "Ana" }]);
  connections[0].deliver({ type: "lobby_status", moderators: 1 });
  assert.deepEqual(events.at(-1), ["lobby", { moderators: 1, name: "Ana" }]);
  connections[0].deliver({ type: "joined", v: 1, sid: "S1", room: ROOM, self: SELF, participants: [], ice_servers: [] });
  assert.equal(meeting.status, "joined");
  assert.equal(meeting.lobby, null);
});

test("leaving the lobby sends leave", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections } = freshMeeting(t);
  connections[0].deliver({ type: "lobby", room: { name: "board" }, self: { identity: "ana", name: "Ana" }, moderators: 1 });
  meeting.leave();
  assert.deepEqual(connections[0].sent.at(-1), { type: "leave" });
});

test("a denied knock ends the meeting as lobby_denied", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { connections, events } = freshMeeting(t);
  connections[0].deliver({ type: "lobby", room: { name: "board" }, self: { identity: "ana", name: "Ana" }, moderators: 1 });
  connections[0].deliver({ type: "error", code: "lobby_denied", message: "no", ref: "join" });
  connections[0].closeWith(CLOSE.JOIN_REFUSED);
  assert.deepEqual(events.at(-1), ["ended", { kind: "refused", code: "lobby_denied", reason: undefined, message: "no" }]);
});

test("a room password is asked, then sent in the next join; no reconnect in between", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections, events } = freshMeeting(t);
  connections[0].deliver({ type: "error", code: "password_required", message: "needs a password", ref: "join" });
  connections[0].closeWith(CLOSE.JOIN_REFUSED);
  assert.equal(meeting.status, "password");
  assert.deepEqual(events.at(-1), ["password-needed", { wrong: false }]);
  t.mock.timers.tick(10_000);
  assert.equal(connections.length, 1); // waits for the person, not a timer
  meeting.submitPassword("kopi");
  connections[1].open();
  assert.equal(connections[1].sent[0].password, "kopi");
  connections[1].deliver({ type: "error", code: "bad_password", message: "wrong", ref: "join" });
  assert.deepEqual(events.at(-1), ["password-needed", { wrong: true }]);
});

test("moderators hear who waits", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const { meeting, connections } = joinedMeeting(t);
  const seen = [];
  meeting.addEventListener("lobby-updated", (ev) => seen.push(ev.detail.waiting.map((w) => w.identity)));
  connections[0].deliver({ type: "lobby_updated", waiting: [{ identity: "bob", name: "Bob", since: 1, away: false }] });
  assert.deepEqual(seen, [["bob"]]);
  meeting.admit("bob");
  meeting.deny("eve");
  assert.deepEqual(connections[0].sent.slice(-2), [
    { type: "admit", identity: "bob" },
    { type: "deny", identity: "eve" },
  ]);
});
