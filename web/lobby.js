// Who gets in: the waiting page shown while a moderator has not let this participant in yet, the
// room password prompt, and the moderators' side: who is knocking, with a sound.

import { byId, h } from "./dom.js";

/** The meeting's side of admission: the waiting page and the password prompt for this client,
 *  the knock notices for a moderator. Listens to the Meeting's lobby events. */
export class Admission {
  constructor({ i18n, notices, meeting, title, openPeople, onChange }) {
    this.i18n = i18n;
    this.notices = notices;
    this.meeting = meeting;
    this.openPeople = openPeople;
    this.onChange = onChange;
    this.view = new LobbyView({ i18n, onLeave: () => meeting.leave() });
    this._knocking = new Set(); // who a moderator has been told is waiting
    meeting.addEventListener("lobby", (ev) => this.view.show({ title: title(), name: ev.detail.name, moderators: ev.detail.moderators }));
    meeting.addEventListener("lobby-updated", (ev) => this._onWaiting(ev.detail.waiting));
    meeting.addEventListener("password-needed", async (ev) => {
      const password = await askPassword({ i18n, dialog: byId("dialog"), wrong: ev.detail.wrong });
      if (password) meeting.submitPassword(password);
      else meeting.leave();
    });
  }

  _onWaiting(waiting) {
    const t = (k, p) => this.i18n.t(k, p);
    const arrived = waiting.filter((w) => !w.away && !this._knocking.has(w.identity));
    this._knocking = new Set(waiting.map((w) => w.identity));
    if (arrived.length && this.meeting.isModerator) {
      chime();
      const one = arrived.length === 1 ? arrived[0] : null;
      this.notices.toast(one ? t("lobby.someone_waiting", { name: one.name || one.identity }) : t("lobby.knocking", { count: arrived.length }), {
        testid: "lobby-notice",
        timeoutMs: 15000,
        action: one ? { label: t("lobby.admit"), onClick: () => this.meeting.admit(one.identity) } : { label: t("lobby.review"), onClick: () => this.openPeople() },
      });
    }
    this.onChange();
  }
}

export class LobbyView {
  /** `onLeave()` when the participant gives up waiting. */
  constructor({ i18n, onLeave }) {
    this.i18n = i18n;
    this.view = byId("view-lobby");
    this.state = null;
    byId("lobby-leave").addEventListener("click", () => onLeave());
    i18n.addEventListener("change", () => this.state && this._render());
  }

  /** state: {title, name, moderators} */
  show(state) {
    this.state = state;
    this._render();
    for (const v of document.querySelectorAll(".view")) v.hidden = v !== this.view;
  }

  get shown() {
    return !this.view.hidden;
  }

  _render() {
    const t = (k, p) => this.i18n.t(k, p);
    const { title, name, moderators } = this.state;
    byId("lobby-title").textContent = t("lobby.title");
    byId("lobby-room").textContent = title;
    byId("lobby-name").textContent = t("lobby.you_are", { name });
    const status = byId("lobby-status");
    status.textContent = t(moderators > 0 ? "lobby.waiting" : "lobby.no_moderator");
    status.dataset.moderators = String(moderators);
    byId("lobby-leave").textContent = t("lobby.leave");
  }
}

/** Asks for the room password in the page's dialog; resolves with it, or null when cancelled. */
export function askPassword({ i18n, dialog, wrong }) {
  const t = (k) => i18n.t(k);
  return new Promise((resolve) => {
    const input = h("input", { type: "password", id: "room-password", autocomplete: "off", maxlength: "128", required: true, dataset: { testid: "room-password" } });
    const error = h("p", { class: "form-error", role: "alert", dataset: { testid: "password-error" }, hidden: !wrong }, t("password.wrong"));
    let settled = false;
    const done = (value) => {
      if (settled) return;
      settled = true;
      dialog.close();
      resolve(value);
    };
    const form = h(
      "form",
      {
        method: "dialog",
        onsubmit: (ev) => {
          ev.preventDefault();
          if (input.value) done(input.value);
        },
      },
      h("h2", { id: "dialog-title" }, t("password.title")),
      h("p", {}, t("password.text")),
      h("label", { for: "room-password" }, t("password.label")),
      input,
      error,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "btn", onclick: () => done(null) }, t("common.cancel")),
        h("button", { type: "submit", class: "btn btn-primary", dataset: { testid: "password-submit" } }, t("password.join")),
      ),
    );
    dialog.replaceChildren(form);
    dialog.setAttribute("aria-labelledby", "dialog-title");
    dialog.onclose = () => done(null);
    dialog.showModal();
    input.focus();
  });
}

/** A short two-note chime for a moderator when someone starts waiting (no audio file needed). */
export function chime() {
  try {
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!Ctx) return;
    const ctx = new Ctx();
    const now = ctx.currentTime;
    for (const [i, freq] of [880, 1175].entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + i * 0.15);
      gain.gain.exponentialRampToValueAtTime(0.15, now + i * 0.15 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.15 + 0.3);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + i * 0.15);
      osc.stop(now + i * 0.15 + 0.32);
    }
    setTimeout(() => ctx.close(), 1000);
  } catch {
    // no sound is better than a broken page
  }
}

/** The "waiting to join" list for the people panel: admit, deny, admit all. */
export function waitingSection({ i18n, waiting, admit, deny }) {
  const t = (k, p) => i18n.t(k, p);
  if (!waiting.length) return null;
  const rows = waiting.map((w) =>
    h(
      "li",
      { class: "person person-waiting", dataset: { waitingRow: w.identity, away: String(!!w.away) } },
      h("div", { class: "person-text" }, h("span", { class: "person-name" }, w.name || w.identity), w.away ? h("span", { class: "person-role" }, t("lobby.away")) : null),
      h(
        "div",
        { class: "person-actions" },
        h("button", { type: "button", class: "btn btn-small", dataset: { action: "deny", testid: "lobby-deny" }, onclick: () => deny(w.identity) }, t("lobby.deny")),
        h("button", { type: "button", class: "btn btn-small btn-primary", dataset: { action: "admit", testid: "lobby-admit" }, onclick: () => admit(w.identity) }, t("lobby.admit")),
      ),
    ),
  );
  return h(
    "section",
    { class: "waiting", dataset: { testid: "lobby-waiting" }, "aria-labelledby": "waiting-title" },
    h(
      "header",
      { class: "waiting-header" },
      h("h3", { id: "waiting-title" }, t("lobby.knocking", { count: waiting.length })),
      waiting.length > 1
        ? h("button", { type: "button", class: "btn btn-small", dataset: { testid: "lobby-admit-all" }, onclick: () => waiting.forEach((w) => admit(w.identity)) }, t("lobby.admit_all"))
        : null,
    ),
    h("ul", { class: "people-list" }, ...rows),
  );
}
