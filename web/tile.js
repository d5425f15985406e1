// One video tile: a participant's camera (or avatar) or a screen share, with name and state.

import { h, hueOf, initials, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";

export class Tile {
  constructor({ i18n, participant, source, isSelf, onPin }) {
    this.i18n = i18n;
    this.source = source;
    this.isSelf = isSelf;
    this.participant = participant;
    this._track = null;
    this._pinned = false;
    this.video = h("video", { autoplay: true, playsinline: true, muted: true, class: "tile-video" });
    this.video.muted = true; // the attribute alone does not mute; audio plays through audio slots
    this.avatar = h("div", { class: "tile-avatar", "aria-hidden": "true" }, h("span", { class: "avatar" }));
    this.name = h("span", { class: "tile-name" });
    this.micIcon = h("span", { class: "tile-mic" });
    this.handIcon = h("span", { class: "tile-hand", hidden: true }, svgIcon(ICONS.hand));
    this.keysNotice = h("div", { class: "tile-keys", role: "status", hidden: true }, svgIcon(ICONS.lock, "icon"), h("span"));
    this.pinButton = h("button", { type: "button", class: "icon-btn tile-pin", onclick: () => onPin(participant.sid) });
    this.el = h(
      "div",
      {
        class: `tile tile-${source}` + (isSelf ? " tile-self" : ""),
        role: "group",
        dataset: { participant: participant.identity, sid: participant.sid, source },
      },
      this.video,
      this.avatar,
      this.keysNotice,
      h("div", { class: "tile-footer" }, this.micIcon, this.name, this.handIcon),
      this.pinButton,
    );
    this.video.addEventListener("resize", () => this._syncVideoFlag());
    this.video.addEventListener("loadeddata", () => this._syncVideoFlag());
  }

  /** Updates what the tile shows. `track`: a video MediaStreamTrack or null. `keysMissing`: in an
   *  end-to-end encrypted meeting, whether this sender's frames cannot be decrypted (yet); null
   *  elsewhere. Undecryptable frames never reach the decoder, so the tile says why it is empty. */
  update({ participant, track, speaking = false, pinned = false, keysMissing = null }) {
    this.participant = participant;
    const { state, name, identity } = participant;
    const t = (k, p) => this.i18n.t(k, p);
    const shownName = this.source === "screen" ? t("tile.screen_of", { name }) : this.isSelf ? t("tile.you", { name }) : name;
    this.name.textContent = shownName;
    this.el.setAttribute("aria-label", shownName);
    this.el.dataset.participant = identity;
    const avatar = this.avatar.firstElementChild;
    avatar.textContent = initials(name);
    avatar.style.setProperty("--hue", String(hueOf(identity)));
    const showVideo = this.source === "screen" || !state.video_muted;
    this.setTrack(showVideo ? track : null);
    if (this.source === "camera") {
      this.micIcon.hidden = false;
      this.micIcon.replaceChildren(svgIcon(state.audio_muted ? ICONS.micOff : ICONS.mic));
      this.micIcon.classList.toggle("is-off", !!state.audio_muted);
      this.micIcon.setAttribute("role", "img");
      this.micIcon.setAttribute("aria-label", t(state.audio_muted ? "state.mic_off" : "state.mic_on"));
      this.handIcon.hidden = !state.hand_raised;
      this.handIcon.setAttribute("aria-label", t("state.hand_raised"));
      this.handIcon.setAttribute("role", "img");
    } else {
      this.micIcon.hidden = true;
      this.handIcon.hidden = true;
    }
    const waiting = keysMissing === true && !this.isSelf && !!this._track;
    this.keysNotice.hidden = !waiting;
    this.keysNotice.lastElementChild.textContent = t("e2ee.waiting_for_keys");
    if (keysMissing === null || this.isSelf) delete this.el.dataset.e2ee;
    else this.el.dataset.e2ee = waiting ? "waiting" : "ok";
    this.el.classList.toggle("is-waiting-keys", waiting);
    this.el.dataset.audio = state.audio_muted ? "off" : "on";
    this.el.classList.toggle("is-speaking", speaking);
    this.el.classList.toggle("is-pinned", pinned);
    this.el.classList.toggle("is-mirrored", this.isSelf && this.source === "camera");
    this._pinned = pinned;
    const pinLabel = t(pinned ? "tile.unpin" : "tile.pin", { name });
    this.pinButton.replaceChildren(svgIcon(ICONS.pin));
    this.pinButton.setAttribute("aria-label", pinLabel);
    this.pinButton.setAttribute("aria-pressed", String(pinned));
    this.pinButton.title = pinLabel;
    this.pinButton.hidden = this.source === "screen";
  }

  setTrack(track) {
    if (track === this._track) return;
    this._track = track;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) this.video.play().catch(() => {});
    this._syncVideoFlag();
  }

  _syncVideoFlag() {
    const on = !!this._track && this._track.readyState === "live";
    this.el.classList.toggle("has-video", on);
    this.el.dataset.video = on ? "on" : "off";
  }

  /** Rendered size in device pixels (what the server should send at most). */
  size() {
    const r = this.el.getBoundingClientRect();
    const dpr = globalThis.devicePixelRatio || 1;
    return { width: Math.round(r.width * dpr), height: Math.round(r.height * dpr) };
  }

  remove() {
    this.video.srcObject = null;
    this.el.remove();
  }
}
