// Things the UI tells the user: toasts, the screen-reader announcer, the connection banner and a
// confirmation dialog.

import { h, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";

const MAX_TOASTS = 4;

export class Notices {
  constructor({ i18n, toasts, announcer, banner, dialog }) {
    this.i18n = i18n;
    this._toasts = toasts;
    this._announcer = announcer;
    this._banner = banner;
    this._dialog = dialog;
  }

  /** A short message in the corner (and read by screen readers). Optional action button. */
  toast(text, { kind = "info", action = null, timeoutMs = 6000, testid = null } = {}) {
    const close = () => item.remove();
    const item = h(
      "div",
      { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", dataset: testid ? { testid } : {} },
      svgIcon(kind === "info" ? ICONS.info : ICONS.warning, "icon toast-icon"),
      h("span", { class: "toast-text" }, text),
      action
        ? h("button", { type: "button", class: "btn btn-small", onclick: () => (action.onClick(), close()) }, action.label)
        : null,
      h(
        "button",
        { type: "button", class: "icon-btn toast-close", "aria-label": this.i18n.t("common.dismiss"), title: this.i18n.t("common.dismiss"), onclick: close },
        svgIcon(ICONS.close),
      ),
    );
    this._toasts.append(item);
    while (this._toasts.children.length > MAX_TOASTS) this._toasts.firstElementChild.remove();
    if (timeoutMs) setTimeout(close, action ? timeoutMs * 2 : timeoutMs);
    return item;
  }

  /** Read out by screen readers only. */
  announce(text) {
    this._announcer.textContent = "";
    setTimeout(() => (this._announcer.textContent = text), 50);
  }

  showBanner(text, kind = "warning") {
    this._banner.className = `banner banner-${kind}`;
    this._banner.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), h("span", {}, text));
    this._banner.hidden = false;
  }

  hideBanner() {
    this._banner.hidden = true;
    this._banner.replaceChildren();
  }

  /** Asks a yes/no question in a modal dialog; resolves true when confirmed. */
  confirm({ title, text, confirmLabel, danger = false }) {
    const dialog = this._dialog;
    return new Promise((resolve) => {
      const done = (ok) => {
        dialog.close();
        resolve(ok);
      };
      const cancel = h("button", { type: "button", class: "btn", onclick: () => done(false) }, this.i18n.t("common.cancel"));
      const ok = h(
        "button",
        { type: "button", class: danger ? "btn btn-danger" : "btn btn-primary", dataset: { testid: "confirm" }, onclick: () => done(true) },
        confirmLabel,
      );
      dialog.replaceChildren(
        h("h2", { id: "dialog-title" }, title),
        text ? h("p", {}, text) : null,
        h("div", { class: "dialog-actions" }, cancel, ok),
      );
      dialog.setAttribute("aria-labelledby", "dialog-title");
      dialog.onclose = () => resolve(false);
      dialog.showModal();
      cancel.focus();
    });
  }

  /** Shows content (a list of elements) in the dialog with a close button. */
  inform(title, content) {
    const dialog = this._dialog;
    const close = h("button", { type: "button", class: "btn btn-primary", onclick: () => dialog.close() }, this.i18n.t("common.close"));
    dialog.replaceChildren(h("h2", { id: "dialog-title" }, title), ...content, h("div", { class: "dialog-actions" }, close));
    dialog.setAttribute("aria-labelledby", "dialog-title");
    dialog.onclose = null;
    dialog.showModal();
    close.focus();
  }
}
