// web/protocol.js without a browser: the send pacer, the token in the fragment, the signaling
// connection over a fake WebSocket.
import assert from "node:assert/strict";
import test from "node:test";

import { CLOSE, SendPacer, Signaling, takeTokenFromFragment } from "../../web/protocol.js";

class FakeWebSocket extends EventTarget {
  static last = null;

  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.last = this;
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }

  // what the server does
  open() {
    this.readyState = 1;
    this.dispatchEvent(new Event("open"));
  }

  receive(data) {
    const ev = new Event("message");
    ev.data = data;
    this.dispatchEvent(ev);
  }

  serverClose(code) {
    this.readyState = 3;
    const ev = new Event("close");
    ev.code = code;
    ev.reason = "";
    this.dispatchEvent(ev);
  }
}

function connected({ now = () => 0 } = {}) {
  const sig = new Signaling("wss://example.test/ws", { WebSocketImpl: FakeWebSocket, now });
  const events = [];
  for (const type of ["open", "message", "close"]) sig.addEventListener(type, (ev) => events.push([type, ev.detail]));
  sig.connect();
  return { sig, ws: FakeWebSocket.last, events };
}

test("the pacer allows a burst, then one send per 1/rate seconds", () => {
  const pacer = new SendPacer(10, 3, 0);
  assert.deepEqual([pacer.take(0), pacer.take(0), pacer.take(0)], [0, 0, 0]);
  assert.equal(pacer.take(0), 100);
  assert.equal(pacer.take(100), 0);
});

test("the token is read from the fragment and removed from the address bar", () => {
  const calls = [];
  const history = { replaceState: (...args) => calls.push(args) };
  const token = takeTokenFromFragment({ hash: "#token=abc.def.ghi", pathname: "/r/board" }, history);
  assert.equal(token, "abc.def.ghi");
  assert.deepEqual(calls, [[null, "", "/r/board"]]);
  assert.equal(takeTokenFromFragment({ hash: "", pathname: "/r/board" }, history), null);
});

test("messages sent before the socket opens go out once it does, in order", () => {
  const { sig, ws } = connected();
  sig.send({ type: "join", token: "t" });
  sig.send({ type: "ping", t: 1 });
  assert.deepEqual(ws.sent, []);
  ws.open();
  assert.deepEqual(ws.sent.map((m) => m.type), ["join", "ping"]);
});

test("only JSON objects with a type are reported as messages", () => {
  const { ws, events } = connected();
  ws.open();
  ws.receive("not json");
  ws.receive(JSON.stringify({ no: "type" }));
  ws.receive(JSON.stringify({ type: "bye" }));
  assert.deepEqual(events, [["open", null], ["message", { type: "bye" }]]);
});

test("the close is reported once with its code; after abandon nothing is", () => {
  const first = connected();
  first.ws.open();
  first.ws.serverClose(CLOSE.GOING_AWAY);
  assert.deepEqual(first.events.at(-1), ["close", { code: 1001, reason: "" }]);

  const second = connected();
  second.ws.open();
  second.sig.abandon();
  second.ws.receive(JSON.stringify({ type: "pong" }));
  second.ws.serverClose(CLOSE.GOING_AWAY);
  assert.deepEqual(second.events, [["open", null]]);
  assert.equal(second.ws.closedWith, CLOSE.NORMAL);
  assert.equal(second.sig.send({ type: "ping" }), false);
});
