// The meeting's control bar, its "more" menu and the keyboard shortcuts.

import { h, isTyping, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";

/** Single-key shortcuts (ignored while typing in a field or with Ctrl/Alt/Meta held). */
export const SHORTCUTS = Object.freeze([
  { key: "m", action: "mic", label: "shortcuts.mic" },
  { key: "v", action: "camera", label: "shortcuts.camera" },
  { key: "d", action: "share", label: "shortcuts.share" },
  { key: "r", action: "hand", label: "shortcuts.hand" },
  { key: "c", action: "chat", label: "shortcuts.chat" },
  { key: "p", action: "people", label: "shortcuts.people" },
  { key: "w", action: "layout", label: "shortcuts.layout" },
  { key: "?", action: "shortcuts", label: "shortcuts.help" },
]);

export class Toolbar {
  /** `actions`: {mic, camera, share, hand, layout, chat, people, leave, muteAll, lock, end, shortcuts} */
  constructor({ i18n, root, actions }) {
    this.i18n = i18n;
    this.actions = actions;
    this.state = {};
    const b = (name, testid, icon, onclick, extra = {}) =>
      h("button", { type: "button", class: `tool tool-${name}`, dataset: { testid }, onclick, ...extra }, svgIcon(icon), h("span", { class: "tool-label" }));
    this.mic = b("mic", "mic", ICONS.mic, () => actions.mic());
    this.camera = b("camera", "camera", ICONS.cam, () => actions.camera());
    this.share = b("share", "screen-share", ICONS.screen, () => actions.share());
    this.hand = b("hand", "raise-hand", ICONS.hand, () => actions.hand());
    this.layout = b("layout", "layout", ICONS.speaker, () => actions.layout());
    this.chat = b("chat", "chat-toggle", ICONS.chat, () => actions.chat(), { "aria-controls": "panel-chat" });
    this.unread = h("span", { class: "badge badge-count", dataset: { testid: "chat-unread" }, hidden: true });
    this.chat.append(this.unread);
    this.people = b("people", "people-toggle", ICONS.people, () => actions.people(), { "aria-controls": "panel-people" });
    this.count = h("span", { class: "badge badge-muted", dataset: { testid: "people-count" } });
    this.people.append(this.count);
    this.knocking = h("span", { class: "badge badge-count badge-knocking", dataset: { testid: "lobby-count" }, hidden: true });
    this.people.append(this.knocking);
    this.more = b("more", "more", ICONS.more, () => this.toggleMenu(), { "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": "more-menu" });
    this.leave = b("leave", "leave", ICONS.leave, () => actions.leave());
    this.menu = h("div", { class: "menu", id: "more-menu", role: "menu", hidden: true });
    this.menu.addEventListener("keydown", (ev) => this._menuKeys(ev));
    const group = (label, ...items) => h("div", { class: "tool-group", role: "group", dataset: { label } }, ...items);
    this.groups = [
      group("toolbar.group_media", this.mic, this.camera, this.share),
      group("toolbar.group_meeting", this.hand, this.layout, this.chat, this.people, h("div", { class: "menu-anchor" }, this.more, this.menu)),
      group("toolbar.group_leave", this.leave),
    ];
    root.replaceChildren(...this.groups);
    root.setAttribute("role", "toolbar");
    document.addEventListener("keydown", (ev) => this._shortcut(ev));
    document.addEventListener("pointerdown", (ev) => {
      if (!this.menu.hidden && !this.menu.parentElement.contains(ev.target)) this.closeMenu(false);
    });
    this.root = root;
    i18n.addEventListener("change", () => this.render(this.state));
  }

  /** state: {micOn, camOn, sharing, hand, layout, chatOpen, peopleOpen, unread, count, canAudio,
   *  canVideo, canShare, isModerator, locked} */
  render(state) {
    this.state = state;
    const t = (k, p) => this.i18n.t(k, p);
    this.root.setAttribute("aria-label", t("toolbar.label"));
    for (const g of this.groups) g.setAttribute("aria-label", t(g.dataset.label));
    setTool(this.mic, state.micOn ? ICONS.mic : ICONS.micOff, t(state.micOn ? "controls.mute" : "controls.unmute"), t(state.micOn ? "controls.mic_off" : "controls.mic_on"), "M");
    this.mic.classList.toggle("is-off", !state.micOn);
    this.mic.dataset.on = String(!!state.micOn);
    this.mic.disabled = !state.canAudio;
    setTool(this.camera, state.camOn ? ICONS.cam : ICONS.camOff, t(state.camOn ? "controls.stop_video" : "controls.start_video"), t(state.camOn ? "controls.cam_off" : "controls.cam_on"), "V");
    this.camera.classList.toggle("is-off", !state.camOn);
    this.camera.dataset.on = String(!!state.camOn);
    this.camera.disabled = !state.canVideo;
    setTool(this.share, ICONS.screen, t(state.sharing ? "controls.stop_share" : "controls.share"), t(state.sharing ? "controls.stop_share_long" : "controls.share_long"), "D");
    this.share.classList.toggle("is-active", !!state.sharing);
    this.share.hidden = !state.canShare;
    this.share.disabled = !state.shareAvailable && !state.sharing;
    if (this.share.disabled) this.share.title = t("media.share_unavailable");
    setTool(this.hand, ICONS.hand, t(state.hand ? "controls.lower_hand" : "controls.raise_hand"), t(state.hand ? "controls.lower_hand" : "controls.raise_hand"), "R");
    this.hand.setAttribute("aria-pressed", String(!!state.hand));
    this.hand.classList.toggle("is-active", !!state.hand);
    const toGrid = state.layout !== "grid";
    setTool(this.layout, toGrid ? ICONS.grid : ICONS.speaker, t(toGrid ? "controls.grid_view" : "controls.speaker_view"), t(toGrid ? "controls.grid_view" : "controls.speaker_view"), "W");
    setTool(this.chat, ICONS.chat, t("controls.chat"), t("controls.chat_long"), "C");
    this.chat.setAttribute("aria-expanded", String(!!state.chatOpen));
    this.chat.classList.toggle("is-active", !!state.chatOpen);
    this.unread.hidden = !state.unread;
    this.unread.textContent = state.unread > 99 ? "99+" : String(state.unread || "");
    if (state.unread) this.chat.setAttribute("aria-label", `${t("controls.chat_long")} (C), ${t("chat.unread", { count: state.unread })}`);
    setTool(this.people, ICONS.people, t("controls.people"), t("controls.people_long"), "P");
    this.people.setAttribute("aria-expanded", String(!!state.peopleOpen));
    this.people.classList.toggle("is-active", !!state.peopleOpen);
    this.count.textContent = String(state.count || 0);
    this.knocking.hidden = !state.waiting;
    this.knocking.textContent = String(state.waiting || "");
    if (state.waiting) this.people.setAttribute("aria-label", `${t("controls.people_long")} (P), ${t("lobby.knocking", { count: state.waiting })}`);
    setTool(this.more, ICONS.more, t("controls.more"), t("controls.more_long"), null);
    setTool(this.leave, ICONS.leave, t("controls.leave"), t("controls.leave_long"), null);
    this._renderMenu();
  }

  _renderMenu() {
    const t = (k) => this.i18n.t(k);
    const s = this.state;
    const item = (testid, icon, label, onclick, danger = false) =>
      h("button", { type: "button", role: "menuitem", class: "menu-item" + (danger ? " is-danger" : ""), dataset: { testid }, tabindex: "-1", onclick: () => (this.closeMenu(true), onclick()) }, svgIcon(icon), h("span", {}, label));
    const items = [];
    if (s.isModerator) {
      items.push(item("mute-all", ICONS.micOff, t("moderation.mute_all"), () => this.actions.muteAll()));
      items.push(item("lock-room", s.locked ? ICONS.unlock : ICONS.lock, t(s.locked ? "moderation.unlock" : "moderation.lock"), () => this.actions.lock()));
      items.push(item("end-meeting", ICONS.leave, t("moderation.end"), () => this.actions.end(), true));
      items.push(h("div", { class: "menu-sep", role: "separator" }));
    }
    items.push(item("shortcuts", ICONS.keyboard, t("shortcuts.title"), () => this.actions.shortcuts()));
    this.menu.setAttribute("aria-label", t("controls.more_long"));
    this.menu.replaceChildren(...items);
  }

  toggleMenu() {
    if (this.menu.hidden) this.openMenu();
    else this.closeMenu(true);
  }

  openMenu() {
    this._renderMenu();
    this.menu.hidden = false;
    this.more.setAttribute("aria-expanded", "true");
    const first = this.menu.querySelector("[role=menuitem]");
    if (first) first.focus();
  }

  closeMenu(returnFocus) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.more.setAttribute("aria-expanded", "false");
    if (returnFocus) this.more.focus();
  }

  _menuKeys(ev) {
    const items = [...this.menu.querySelectorAll("[role=menuitem]")];
    const i = items.indexOf(document.activeElement);
    if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      this.closeMenu(true);
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const next = (i + (ev.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items[next].focus();
    } else if (ev.key === "Home" || ev.key === "End") {
      ev.preventDefault();
      items[ev.key === "Home" ? 0 : items.length - 1].focus();
    } else if (ev.key === "Tab") {
      this.closeMenu(false);
    }
  }

  _shortcut(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || isTyping(ev) || ev.repeat) return;
    if (document.querySelector("dialog[open]") || this.root.closest("[hidden]")) return;
    const hit = SHORTCUTS.find((s) => s.key === ev.key.toLowerCase() || s.key === ev.key);
    if (!hit) return;
    ev.preventDefault();
    this.actions[hit.action]();
  }
}

function setTool(button, icon, shortLabel, longLabel, key) {
  button.firstElementChild.replaceWith(svgIcon(icon));
  button.querySelector(".tool-label").textContent = shortLabel;
  const label = key ? `${longLabel} (${key})` : longLabel;
  button.setAttribute("aria-label", label);
  button.title = label;
  if (key) button.setAttribute("aria-keyshortcuts", key);
}
