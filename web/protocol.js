// The signaling transport, protocol version 1 (docs/PROTOCOL.md). No DOM code here.
//
// Signaling owns one WebSocket: it parses frames into messages, paces what it sends (the server
// refuses more than 20 frames a second) and reports the close. What the messages mean is the
// business of meeting.js and media.js.

export const PROTOCOL_VERSION = 1;

/** WebSocket close codes the server uses (docs/PROTOCOL.md, "Close codes"). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  TOO_LARGE: 1009,
  TRY_AGAIN: 1013,
  SERVER_ERROR: 1011,
  JOIN_REFUSED: 4000,
  REMOVED: 4001,
  ROOM_CLOSED: 4002,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4009,
  JOIN_TIMEOUT: 4010,
  SEAT_LOST: 4011,
  MEDIA_TIMEOUT: 4012,
});

/** Server-to-client message types that belong to the media layer. */
export const MEDIA_MESSAGE_TYPES = new Set([
  "publish_answer",
  "publish_layers",
  "subscribe_offer",
  "ice_candidate",
  "track_published",
  "track_unpublished",
  "track_muted",
  "track_map",
  "speakers",
  "ice_servers",
  "media_reset",
]);

/** Client-to-server media message types: an `error` whose `ref` is one of these is a media error. */
export const MEDIA_REQUEST_TYPES = new Set([
  "publish_offer",
  "subscribe_answer",
  "ice_candidate",
  "update_subscription",
  "unpublish",
]);

/** Reads the join token from the URL fragment (never the query string) and removes it from the
 *  address bar so it does not stay in history or get shared by copy and paste. */
export function takeTokenFromFragment(loc, history) {
  const params = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (loc.hash && history && history.replaceState) {
    history.replaceState(null, "", loc.pathname);
  }
  return token || null;
}

/** A token bucket: `rate` sends a second with bursts of `burst`; time is passed in (ms). */
export class SendPacer {
  constructor(rate, burst, now) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token if there is one; otherwise returns the ms to wait for the next. */
  take(now) {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}

const MAX_QUEUED = 1000;

/**
 * One signaling connection. Events: `open`, `message` (detail: the parsed message), `close`
 * (detail: {code, reason}). After `abandon()` it reports nothing more.
 */
export class Signaling extends EventTarget {
  constructor(url, { WebSocketImpl = globalThis.WebSocket, rate = 15, burst = 40, now = () => Date.now() } = {}) {
    super();
    this.url = url;
    this._WebSocket = WebSocketImpl;
    this._now = now;
    this._pacer = new SendPacer(rate, burst, now());
    this._queue = [];
    this._timer = null;
    this._ws = null;
    this._abandoned = false;
  }

  get isOpen() {
    return !!this._ws && this._ws.readyState === 1;
  }

  connect() {
    const ws = new this._WebSocket(this.url);
    this._ws = ws;
    ws.addEventListener("open", () => {
      if (this._abandoned) return;
      this.dispatchEvent(new CustomEvent("open"));
      this._flush(); // messages queued before the socket opened
    });
    ws.addEventListener("message", (ev) => {
      if (this._abandoned || typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg.type === "string") this.dispatchEvent(new CustomEvent("message", { detail: msg }));
    });
    ws.addEventListener("close", (ev) => {
      this._stopTimer();
      if (!this._abandoned) {
        this._abandoned = true;
        this.dispatchEvent(new CustomEvent("close", { detail: { code: ev.code, reason: ev.reason } }));
      }
    });
  }

  /** Queues a message; sent as fast as the pacer allows, in order. */
  send(msg) {
    if (this._abandoned) return false;
    if (this._queue.length >= MAX_QUEUED) return false;
    this._queue.push(JSON.stringify(msg));
    this._flush();
    return true;
  }

  _flush() {
    this._stopTimer();
    while (this._queue.length && this.isOpen) {
      const wait = this._pacer.take(this._now());
      if (wait > 0) {
        this._timer = setTimeout(() => this._flush(), wait);
        return;
      }
      this._ws.send(this._queue.shift());
    }
  }

  _stopTimer() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }

  /** Closes normally (the `close` event still fires). */
  close(code = CLOSE.NORMAL) {
    if (this._ws && this._ws.readyState <= 1) this._ws.close(code);
  }

  /** Drops the connection without waiting for the server: no more events are reported. Used when
   *  the connection looks dead (no answer to pings) and a new one is about to replace it. */
  abandon() {
    this._abandoned = true;
    this._stopTimer();
    this._queue = [];
    if (this._ws && this._ws.readyState <= 1) {
      try {
        this._ws.close(CLOSE.NORMAL);
      } catch {
        // closing a socket that never opened can throw in some browsers; it is gone either way
      }
    }
  }
}

