// The chat panel: messages to the room and private messages, with an unread count.

import { h, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";

export const CHAT_MAX_CHARS = 2000;

export class ChatPanel {
  /** `send(text, toIdentity|null)` returns false when it could not be sent; `onUnread(n)`. */
  constructor({ i18n, root, send, onUnread, onClose }) {
    this.i18n = i18n;
    this.root = root;
    this._send = send;
    this._onUnread = onUnread;
    this.open = false;
    this.unread = 0;
    this.selfIdentity = null;
    this.people = [];
    this.title = h("h2", { id: "chat-title", class: "panel-title" });
    this.closeButton = h("button", { type: "button", class: "icon-btn", onclick: onClose }, svgIcon(ICONS.close));
    this.log = h("ol", { class: "chat-log", dataset: { testid: "chat-log" }, "aria-live": "polite", "aria-relevant": "additions" });
    this.empty = h("p", { class: "chat-empty" });
    this.toLabel = h("label", { for: "chat-to" });
    this.to = h("select", { id: "chat-to", dataset: { testid: "chat-to" } });
    this.inputLabel = h("label", { for: "chat-input", class: "visually-hidden" });
    this.input = h("textarea", { id: "chat-input", rows: "2", maxlength: String(CHAT_MAX_CHARS), dataset: { testid: "chat-input" }, autocomplete: "off" });
    this.sendButton = h("button", { type: "submit", class: "btn btn-primary send-btn", dataset: { testid: "chat-send" } }, svgIcon(ICONS.send), h("span", { class: "send-label" }));
    this.form = h(
      "form",
      { class: "chat-form", onsubmit: (ev) => (ev.preventDefault(), this._submit()) },
      h("div", { class: "chat-to-row" }, this.toLabel, this.to),
      h("div", { class: "chat-input-row" }, this.inputLabel, this.input, this.sendButton),
    );
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this._submit();
      }
    });
    root.setAttribute("aria-labelledby", "chat-title");
    root.replaceChildren(h("header", { class: "panel-header" }, this.title, this.closeButton), this.empty, this.log, this.form);
    i18n.addEventListener("change", () => this._renderLabels());
    this._renderLabels();
  }

  _renderLabels() {
    const t = (k, p) => this.i18n.t(k, p);
    this.title.textContent = t("chat.title");
    this.closeButton.setAttribute("aria-label", t("chat.close"));
    this.closeButton.title = t("chat.close");
    this.empty.textContent = t("chat.empty");
    this.toLabel.textContent = t("chat.to");
    this.inputLabel.textContent = t("chat.message");
    this.input.placeholder = t("chat.placeholder");
    this.sendButton.setAttribute("aria-label", t("chat.send"));
    this.sendButton.querySelector(".send-label").textContent = t("chat.send");
    this.setPeople(this.people, this.selfIdentity);
    for (const li of this.log.children) this._renderHeader(li);
  }

  setEnabled(canChat) {
    this.input.disabled = !canChat;
    this.sendButton.disabled = !canChat;
    this.to.disabled = !canChat;
    if (!canChat) this.input.placeholder = this.i18n.t("chat.not_allowed");
  }

  /** The recipients offered: everyone, or one of the other participants. */
  setPeople(people, selfIdentity) {
    this.people = people;
    this.selfIdentity = selfIdentity;
    const current = this.to.value;
    const options = [h("option", { value: "" }, this.i18n.t("chat.everyone"))];
    for (const p of people) {
      if (p.identity !== selfIdentity) options.push(h("option", { value: p.identity }, p.name));
    }
    this.to.replaceChildren(...options);
    this.to.value = [...this.to.options].some((o) => o.value === current) ? current : "";
  }

  /** Opens a private conversation with `identity`. */
  writeTo(identity) {
    this.to.value = identity;
    this.input.focus();
  }

  setOpen(open) {
    this.open = open;
    if (open) this._setUnread(0);
  }

  focus() {
    this.input.focus();
  }

  _submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (this._send(text.slice(0, CHAT_MAX_CHARS), this.to.value || null) !== false) this.input.value = "";
  }

  /** A chat message from the server (also this client's own, echoed back). */
  add(msg) {
    const mine = msg.from && msg.from.identity === this.selfIdentity;
    const li = h("li", {
      class: "chat-msg" + (mine ? " is-mine" : "") + (msg.to ? " is-private" : ""),
      dataset: { from: msg.from.identity, private: msg.to ? "true" : "false", to: msg.to || "" },
    });
    li._message = msg;
    li.append(h("div", { class: "chat-meta" }), h("p", { class: "chat-text" }, msg.text));
    this._renderHeader(li);
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(li);
    this.empty.hidden = true;
    if (atBottom || mine) li.scrollIntoView({ block: "end" });
    if (!mine && (!this.open || document.hidden)) this._setUnread(this.unread + 1);
  }

  _renderHeader(li) {
    const msg = li._message;
    const t = (k, p) => this.i18n.t(k, p);
    const mine = msg.from.identity === this.selfIdentity;
    const who = mine ? t("chat.you") : msg.from.name;
    const parts = [h("strong", { class: "chat-from" }, who)];
    if (msg.to) {
      const target = this.people.find((p) => p.identity === msg.to);
      const label = mine ? t("chat.private_to", { name: target ? target.name : msg.to }) : t("chat.private_from");
      parts.push(h("span", { class: "chat-private" }, label));
    }
    parts.push(h("time", { class: "chat-time", datetime: new Date(msg.ts).toISOString() }, this.i18n.formatTime(msg.ts)));
    li.firstElementChild.replaceChildren(...parts);
  }

  _setUnread(n) {
    this.unread = n;
    this._onUnread(n);
  }
}
