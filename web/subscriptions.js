// Which remote video this client asks the server for, and at which size. No DOM code here.
//
// The UI reports the video tiles it shows with their rendered size in device pixels; the planner
// sends `update_subscription` with only what changed, a moment after the last change (a window
// resize or a page turn produces one message, not dozens). The server picks the simulcast layer
// that covers max_width x max_height, so a thumbnail costs a thumbnail's bandwidth.

const SIZE_CHANGE_RATIO = 0.15; // smaller resizes are not worth a message
const MAX_TRACKS_PER_MESSAGE = 100;

export class SubscriptionPlanner {
  constructor(send, { delayMs = 250 } = {}) {
    this._send = send;
    this._delayMs = delayMs;
    this._desired = new Map(); // track id -> {width, height}
    this._sent = new Map(); // track id -> {width, height, paused}
    this._paused = false;
    this._timer = null;
  }

  /** The tracks on screen now: [{trackId, width, height}] (device pixels). */
  setVisible(list) {
    const next = new Map();
    for (const v of list) {
      if (!v.trackId) continue;
      const prev = next.get(v.trackId);
      const width = Math.max(1, Math.round(v.width));
      const height = Math.max(1, Math.round(v.height));
      // a track shown twice (thumbnail and stage) is asked for at its largest size
      next.set(v.trackId, prev ? { width: Math.max(width, prev.width), height: Math.max(height, prev.height) } : { width, height });
    }
    this._desired = next;
    this._schedule();
  }

  /** Pause all video while the page is hidden (another tab, minimised window). */
  setPaused(paused) {
    if (this._paused === paused) return;
    this._paused = paused;
    this._schedule();
  }

  /** A new connection knows nothing of what the old one asked for. */
  reset() {
    this._sent.clear();
    this._schedule();
  }

  _schedule() {
    if (this._timer !== null) return;
    this._timer = setTimeout(() => {
      this._timer = null;
      this.flush();
    }, this._delayMs);
  }

  /** Sends what changed now; returns the track entries sent (for tests). */
  flush() {
    const changes = [];
    for (const [id, want] of this._desired) {
      const had = this._sent.get(id);
      if (had && had.paused === this._paused && !resized(had, want)) continue;
      const entry = { id, subscribe: true, max_width: want.width, max_height: want.height };
      if (this._paused || (had && had.paused)) entry.paused = this._paused;
      changes.push(entry);
      this._sent.set(id, { ...want, paused: this._paused });
    }
    for (const id of [...this._sent.keys()]) {
      if (!this._desired.has(id)) {
        changes.push({ id, subscribe: false });
        this._sent.delete(id);
      }
    }
    for (let i = 0; i < changes.length; i += MAX_TRACKS_PER_MESSAGE) {
      this._send({ type: "update_subscription", tracks: changes.slice(i, i + MAX_TRACKS_PER_MESSAGE) });
    }
    return changes;
  }

  close() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }
}

function resized(had, want) {
  return (
    Math.abs(want.width - had.width) > had.width * SIZE_CHANGE_RATIO ||
    Math.abs(want.height - had.height) > had.height * SIZE_CHANGE_RATIO
  );
}
