// The participants panel: everyone with role, microphone, camera and raised hand; private
// messages; and, for moderators, mute, stop video, ask to unmute and remove.

import { h, hueOf, initials, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";
import { waitingSection } from "./lobby.js";

export class PeoplePanel {
  /** `actions`: {message(identity), mute(identity, kind), askUnmute(identity), remove(identity), muteAll()} */
  constructor({ i18n, root, actions, onClose }) {
    this.i18n = i18n;
    this.root = root;
    this.actions = actions;
    this.title = h("h2", { id: "people-title", class: "panel-title" });
    this.closeButton = h("button", { type: "button", class: "icon-btn", onclick: onClose }, svgIcon(ICONS.close));
    this.muteAllButton = h("button", { type: "button", class: "btn btn-small", dataset: { testid: "panel-mute-all" }, onclick: () => actions.muteAll() });
    this.list = h("ul", { class: "people-list", dataset: { testid: "participants" } });
    this.waitingBox = h("div", { class: "waiting-box" });
    root.setAttribute("aria-labelledby", "people-title");
    root.replaceChildren(h("header", { class: "panel-header" }, this.title, this.muteAllButton, this.closeButton), this.waitingBox, this.list);
    this.model = null;
    i18n.addEventListener("change", () => this.model && this.render(this.model));
  }

  /** model: {people (self first), selfSid, isModerator, canChat, waiting, isVerified(identity)?}
   *  isVerified: in an end-to-end encrypted meeting, whether the safety code was compared */
  render(model) {
    this.model = model;
    const t = (k, p) => this.i18n.t(k, p);
    const waiting = model.isModerator ? model.waiting || [] : [];
    this.waitingBox.replaceChildren(
      ...[waitingSection({ i18n: this.i18n, waiting, admit: (id) => this.actions.admit(id), deny: (id) => this.actions.deny(id) })].filter(Boolean),
    );
    this.title.textContent = t("people.title", { count: model.people.length });
    this.closeButton.setAttribute("aria-label", t("people.close"));
    this.closeButton.title = t("people.close");
    this.muteAllButton.hidden = !model.isModerator;
    this.muteAllButton.textContent = t("moderation.mute_all");
    const focusedRow = document.activeElement && document.activeElement.closest("[data-participant-row]");
    const focusedKey = focusedRow ? `${focusedRow.dataset.participantRow}|${document.activeElement.dataset.action || ""}` : null;
    const hands = model.people.filter((p) => p.state.hand_raised && p.sid !== model.selfSid);
    const ordered = [...model.people].sort((a, b) => rank(a, model.selfSid) - rank(b, model.selfSid));
    this.list.replaceChildren(...ordered.map((p) => this._row(p, model)));
    if (focusedKey) {
      const [identity, action] = focusedKey.split("|");
      const row = this.list.querySelector(`[data-participant-row="${CSS.escape(identity)}"]`);
      const target = row && (row.querySelector(`[data-action="${CSS.escape(action)}"]`) || row.querySelector("button"));
      if (target) target.focus();
    }
    return hands;
  }

  _row(p, model) {
    const t = (k, params) => this.i18n.t(k, params);
    const isSelf = p.sid === model.selfSid;
    const s = p.state;
    const roleKey = p.role === "moderator" ? "role.moderator" : p.role === "viewer" ? "role.viewer" : null;
    const avatar = h("span", { class: "avatar avatar-small", "aria-hidden": "true" }, initials(p.name));
    avatar.style.setProperty("--hue", String(hueOf(p.identity)));
    const status = (icon, on, labelKey, cls) => {
      const el = h("span", { class: `person-state ${cls}` + (on ? "" : " is-off"), role: "img", "aria-label": t(labelKey) }, svgIcon(icon));
      el.title = t(labelKey);
      return el;
    };
    const verified = !isSelf && model.isVerified ? model.isVerified(p.identity) : false;
    const states = [
      verified ? status(ICONS.shield, true, "e2ee.verified", "state-verified") : null,
      s.hand_raised ? status(ICONS.hand, true, "state.hand_raised", "state-hand") : null,
      status(s.audio_muted ? ICONS.micOff : ICONS.mic, !s.audio_muted, s.audio_muted ? "state.mic_off" : "state.mic_on", "state-mic"),
      status(s.video_muted ? ICONS.camOff : ICONS.cam, !s.video_muted, s.video_muted ? "state.cam_off" : "state.cam_on", "state-cam"),
    ];
    const actions = [];
    const act = (action, icon, label, onclick, danger = false) => {
      const b = h("button", { type: "button", class: "icon-btn person-action" + (danger ? " is-danger" : ""), dataset: { action }, "aria-label": label, onclick }, svgIcon(icon));
      b.title = label;
      return b;
    };
    if (!isSelf && model.canChat) {
      actions.push(act("message", ICONS.chat, t("people.message", { name: p.name }), () => this.actions.message(p.identity)));
    }
    if (!isSelf && model.isModerator) {
      if (!s.audio_muted) actions.push(act("mute-audio", ICONS.micOff, t("moderation.mute", { name: p.name }), () => this.actions.mute(p.identity, "audio")));
      else actions.push(act("ask-unmute", ICONS.mic, t("moderation.ask_unmute", { name: p.name }), () => this.actions.askUnmute(p.identity)));
      if (!s.video_muted) actions.push(act("mute-video", ICONS.camOff, t("moderation.stop_video", { name: p.name }), () => this.actions.mute(p.identity, "video")));
      actions.push(act("remove", ICONS.remove, t("moderation.remove", { name: p.name }), () => this.actions.remove(p.identity), true));
    }
    return h(
      "li",
      {
        class: "person" + (s.hand_raised ? " has-hand" : ""),
        dataset: { participantRow: p.identity, verified: String(verified), audio: s.audio_muted ? "off" : "on", video: s.video_muted ? "off" : "on", hand: String(!!s.hand_raised) },
      },
      avatar,
      h(
        "div",
        { class: "person-text" },
        h("span", { class: "person-name" }, isSelf ? t("tile.you", { name: p.name }) : p.name),
        roleKey ? h("span", { class: "person-role" }, t(roleKey)) : null,
      ),
      h("div", { class: "person-states" }, ...states),
      h("div", { class: "person-actions" }, ...actions),
    );
  }
}

/** Raised hands first (in the order they joined), then this client, then everyone else. */
function rank(p, selfSid) {
  if (p.state.hand_raised) return 0;
  if (p.sid === selfSid) return 1;
  return 2;
}
