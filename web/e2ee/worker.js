// The encoded-transform worker of an E2EE meeting (a module worker: /static/e2ee/worker.js).
// It encrypts every outgoing encoded frame and decrypts every incoming one; frames it cannot
// encrypt or decrypt are dropped, never passed on. The keys come from the page (keymanager.js).
//
// Streams arrive either way:
//   * RTCRtpScriptTransform(worker, {direction, sender, codec, id}) → `rtctransform` event
//   * Chromium's createEncodedStreams(): the page posts
//     {type: "stream", direction, sender, codec, id, readable, writable} (transfer both streams)
// direction: "send" | "recv"; sender: the publishing sid of a "recv" stream; codec: "vp8" |
// "h264" | "opus", only needed when frames carry no mimeType in getMetadata(); id: any string, so
// that {type: "retarget", id, sender} can point a reused receive stream at another publisher.
//
// Page → worker:
//   {type: "setSendKey", kid, secret}  {type: "setReceiveKey", sender, kid, secret}
//   {type: "removeSender", sender}     {type: "retarget", id, sender}
// Worker → page:
//   {type: "keyResult", op, sender, kid, result}   result of a key message (cryptor.js)
//   {type: "status", sender, state, kid}           throttled per sender; sender null = sending;
//       state "ok" | "missing_key" | "bad_frame" | "unsupported_codec" | "no_send_key"
//   {type: "stats", encrypt, decrypt}              answer to {type: "stats"}: {frames, dropped,
//       ms} each, frames passed and dropped since the start and the milliseconds spent on them
// A receive stream opens each frame with the key of whichever sender it belongs to (its SFrame
// KID), the one it carried last and the one it was pointed at tried first.

import { FrameCryptor } from "./cryptor.js";
import { codecFromMimeType } from "./frame.js";

const STATUS_FLUSH_MS = 1000;

const cryptor = new FrameCryptor();
const streams = new Map(); // id → {sender, last}

/** Frames passed and dropped and the time spent on them, for diagnostics and benchmarks. */
class Timing {
  constructor() {
    this.frames = 0;
    this.dropped = 0;
    this.ms = 0;
  }
  add(ms, ok) {
    this.ms += ms;
    if (ok) this.frames += 1;
    else this.dropped += 1;
  }
  toJSON() {
    return { frames: this.frames, dropped: this.dropped, ms: this.ms };
  }
}
const timing = { encrypt: new Timing(), decrypt: new Timing() };
let pending = Promise.resolve();

function postStatus() {
  for (const event of cryptor.takeStatusEvents()) self.postMessage(event);
}

function codecOf(frame, fallback) {
  const meta = typeof frame.getMetadata === "function" ? frame.getMetadata() : {};
  const named = codecFromMimeType(meta?.mimeType);
  if (named) return named;
  if (fallback) return codecFromMimeType(fallback);
  return frame.type === undefined ? "opus" : ""; // audio frames have no `type`
}

function frameTransform(options) {
  const direction = options.direction === "send" ? "send" : "recv";
  // sender: whom the server says this stream carries; last: who opened its last frame (an audio
  // slot switches between publishers, so every frame may be someone else's: cryptor.decryptAny)
  const stream = { sender: typeof options.sender === "string" ? options.sender : "", last: null };
  if (typeof options.id === "string") streams.set(options.id, stream);
  return new TransformStream({
    async transform(frame, controller) {
      const data = new Uint8Array(frame.data);
      const codec = codecOf(frame, options.codec);
      const started = performance.now();
      if (direction === "send") {
        const sealed = await cryptor.encrypt(codec, data);
        timing.encrypt.add(performance.now() - started, sealed.ok);
        if (sealed.ok) {
          frame.data = sealed.data.buffer.slice(sealed.data.byteOffset, sealed.data.byteOffset + sealed.data.length);
          controller.enqueue(frame);
        }
      } else {
        const opened = await cryptor.decryptAny([stream.last, stream.sender], codec, data);
        timing.decrypt.add(performance.now() - started, opened.status === "ok");
        if (opened.status === "ok") {
          stream.last = opened.sender;
          frame.data = opened.data.buffer.slice(opened.data.byteOffset, opened.data.byteOffset + opened.data.length);
          controller.enqueue(frame);
        }
      }
      postStatus();
    },
  });
}

function attach(readable, writable, options) {
  readable
    .pipeThrough(frameTransform(options ?? {}))
    .pipeTo(writable)
    .catch(() => {})
    .finally(() => {
      if (typeof options?.id === "string") streams.delete(options.id);
    });
}

async function handle(message) {
  switch (message?.type) {
    case "setSendKey": {
      const result = await cryptor.setSendKey(message.kid, message.secret);
      self.postMessage({ type: "keyResult", op: message.type, sender: null, kid: message.kid, result });
      break;
    }
    case "setReceiveKey": {
      const result = await cryptor.setReceiveKey(message.sender, message.kid, message.secret);
      self.postMessage({ type: "keyResult", op: message.type, sender: message.sender, kid: message.kid, result });
      break;
    }
    case "removeSender":
      cryptor.removeSender(message.sender);
      break;
    case "retarget": {
      const stream = streams.get(message.id);
      if (stream && typeof message.sender === "string") stream.sender = message.sender;
      break;
    }
    case "stream":
      attach(message.readable, message.writable, message);
      break;
    case "stats":
      self.postMessage({ type: "stats", encrypt: timing.encrypt.toJSON(), decrypt: timing.decrypt.toJSON() });
      break;
    default:
      break;
  }
}

self.onmessage = (event) => {
  pending = pending.then(() => handle(event.data)).catch(() => {});
};

self.onrtctransform = (event) => {
  const transformer = event.transformer;
  attach(transformer.readable, transformer.writable, transformer.options);
};

const flushTimer = setInterval(postStatus, STATUS_FLUSH_MS);
flushTimer?.unref?.(); // Node's tests only: browsers give a number
