// Plays the remote audio: one <audio> element per audio slot of the subscribe connection.

import { h } from "./dom.js";

export class AudioPlayer {
  constructor(container) {
    this.container = container;
    this.elements = new Map(); // MID -> <audio>
  }

  /** `slots`: [{mid, track}] — every slot the server forwards audio through. */
  sync(slots) {
    const keep = new Set(slots.map((s) => s.mid));
    for (const [mid, el] of this.elements) {
      if (!keep.has(mid)) {
        el.srcObject = null;
        el.remove();
        this.elements.delete(mid);
      }
    }
    for (const slot of slots) {
      let el = this.elements.get(slot.mid);
      if (!el) {
        el = h("audio", { autoplay: true, dataset: { mid: slot.mid } });
        this.container.append(el);
        this.elements.set(slot.mid, el);
      }
      const current = el.srcObject && el.srcObject.getAudioTracks()[0];
      if (current !== slot.track) {
        el.srcObject = new MediaStream([slot.track]);
        el.play().catch(() => {});
      }
    }
  }
}
