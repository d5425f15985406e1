// The transform worker (web/e2ee/worker.js) in Node: a stubbed worker global, streams of fake
// encoded frames as createEncodedStreams would post them, and an rtctransform event.
import assert from "node:assert/strict";
import test from "node:test";

const posted = [];
globalThis.self = globalThis.self ?? { postMessage: (m) => posted.push(m) };
await import("../../web/e2ee/worker.js");

const send = (data) => self.onmessage({ data });
const settle = () => new Promise((r) => setTimeout(r, 30));
/** Waits until `ok()` holds (the worker answers asynchronously; a busy machine is slow). */
async function until(ok, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!ok() && Date.now() < deadline) await settle();
}
const SECRET = new Uint8Array(16).fill(9);
const KID = 0x01000001;

function fakeFrame(bytes, mimeType) {
  return { data: Uint8Array.from(bytes).buffer, type: "delta", getMetadata: () => ({ mimeType }) };
}

async function run(options, frames) {
  const out = [];
  const readable = new ReadableStream({
    start(c) {
      for (const f of frames) c.enqueue(f);
      c.close();
    },
  });
  let closed = false;
  const writable = new WritableStream({
    write: (f) => out.push(new Uint8Array(f.data)),
    close: () => {
      closed = true;
    },
  });
  send({ type: "stream", readable, writable, ...options });
  await until(() => closed);
  return out;
}

const VP8 = [0x31, 0x05, 0x00, ...Array.from({ length: 50 }, (_, i) => i)];
const OPUS = [0x78, 1, 2, 3, 4, 5];

test("without a send key nothing leaves; with one, frames leave encrypted and come back", async () => {
  assert.deepEqual(await run({ direction: "send" }, [fakeFrame(VP8, "video/VP8")]), []);
  send({ type: "setSendKey", kid: KID, secret: SECRET });
  send({ type: "setReceiveKey", sender: "peer", kid: KID, secret: SECRET });
  await until(() => posted.some((m) => m.type === "keyResult" && m.result === "ok"));
  assert.ok(posted.some((m) => m.type === "keyResult" && m.result === "ok"));
  const sealed = await run({ direction: "send" }, [fakeFrame(VP8, "video/VP8"), fakeFrame(OPUS, "audio/opus")]);
  assert.equal(sealed.length, 2);
  assert.deepEqual([...sealed[0].subarray(0, 3)], VP8.slice(0, 3));
  assert.notDeepEqual([...sealed[0]], VP8);
  const opened = await run({ direction: "recv", sender: "peer" }, [
    fakeFrame(sealed[0], "video/VP8"),
    fakeFrame(sealed[1], "audio/opus"),
  ]);
  assert.deepEqual(opened.map((b) => [...b]), [VP8, OPUS]);
});

test("frames of an unknown sender, an unsupported codec or in clear are dropped and reported", async () => {
  const [sealed] = await run({ direction: "send" }, [fakeFrame(VP8, "video/VP8")]);
  const foreign = Uint8Array.from(sealed);
  foreign[4] ^= 0x02; // another epoch in the KID (after 3 clear bytes and the config byte): nobody holds it
  assert.deepEqual(await run({ direction: "recv", sender: "stranger" }, [fakeFrame(foreign, "video/VP8")]), []);
  assert.deepEqual(await run({ direction: "send" }, [fakeFrame(VP8, "video/VP9")]), []);
  assert.deepEqual(await run({ direction: "recv", sender: "peer", codec: "vp8" }, [fakeFrame(VP8, undefined)]), []);
  const states = posted.filter((m) => m.type === "status").map((m) => `${m.sender}:${m.state}`);
  assert.ok(states.includes("stranger:missing_key"), states.join(" "));
});

test("an rtctransform event is served the same way", async () => {
  const [sealed] = await run({ direction: "send" }, [fakeFrame(OPUS, "audio/opus")]);
  const out = [];
  const transformer = {
    options: { direction: "recv", sender: "peer" },
    readable: new ReadableStream({
      start(c) {
        c.enqueue(fakeFrame(sealed, "audio/opus"));
        c.close();
      },
    }),
    writable: new WritableStream({ write: (f) => out.push([...new Uint8Array(f.data)]) }),
  };
  self.onrtctransform({ transformer });
  await settle();
  assert.deepEqual(out, [OPUS]);
});
