// The end-to-end encryption panel: the safety code everybody in the meeting should see alike, how
// to compare it, and a "verified" mark per participant for the ones compared aloud.

import { h, hueOf, initials, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";

export class SecurityPanel {
  /** `onVerify(identity, on)` marks or unmarks a participant as compared. */
  constructor({ i18n, root, onVerify, onClose }) {
    this.i18n = i18n;
    this.root = root;
    this.onVerify = onVerify;
    this.title = h("h2", { id: "e2ee-title", class: "panel-title" });
    this.closeButton = h("button", { type: "button", class: "icon-btn", onclick: onClose }, svgIcon(ICONS.close));
    this.intro = h("p", { class: "e2ee-intro" });
    this.codeLabel = h("h3", { class: "e2ee-code-label", id: "e2ee-code-label" });
    this.digits = h("p", { class: "e2ee-digits", dataset: { testid: "safety-digits" } });
    this.emoji = h("p", { class: "e2ee-emoji", dataset: { testid: "safety-emoji" } });
    this.code = h("div", { class: "e2ee-code", role: "group", "aria-labelledby": "e2ee-code-label", dataset: { testid: "safety-code" } }, this.digits, this.emoji);
    this.howto = h("p", { class: "hint e2ee-howto" });
    this.listLabel = h("h3", { class: "e2ee-list-label" });
    this.list = h("ul", { class: "people-list e2ee-people", dataset: { testid: "verify-list" } });
    root.setAttribute("aria-labelledby", "e2ee-title");
    root.replaceChildren(h("header", { class: "panel-header" }, this.title, this.closeButton), h("div", { class: "e2ee-body" }, this.intro, this.codeLabel, this.code, this.howto, this.listLabel, this.list));
    this.model = null;
    i18n.addEventListener("change", () => this.model && this.render(this.model));
  }

  /** model: {code ({digits, emoji, text} or null), others ([participant]), isVerified(identity)} */
  render(model) {
    this.model = model;
    const t = (k, p) => this.i18n.t(k, p);
    this.title.textContent = t("e2ee.panel_title");
    this.closeButton.setAttribute("aria-label", t("e2ee.close"));
    this.closeButton.title = t("e2ee.close");
    this.intro.textContent = t("e2ee.intro");
    this.codeLabel.textContent = t("e2ee.code_label");
    const { code } = model;
    this.code.dataset.code = code ? code.text : "";
    this.digits.replaceChildren(...(code ? code.digits.map((d) => h("span", { class: "e2ee-group" }, d)) : [h("span", {}, t("e2ee.code_pending"))]));
    this.emoji.replaceChildren(...(code ? code.emoji.map((e) => h("span", { class: "e2ee-emoji-item" }, e)) : []));
    this.emoji.setAttribute("aria-label", code ? code.emoji.join(" ") : "");
    this.howto.textContent = t("e2ee.howto");
    this.listLabel.textContent = t("e2ee.compared_with");
    this.listLabel.hidden = model.others.length === 0;
    this.list.replaceChildren(...model.others.map((p) => this._row(p, model.isVerified(p.identity))));
  }

  _row(p, verified) {
    const t = (k, params) => this.i18n.t(k, params);
    const avatar = h("span", { class: "avatar avatar-small", "aria-hidden": "true" }, initials(p.name));
    avatar.style.setProperty("--hue", String(hueOf(p.identity)));
    const label = verified ? t("e2ee.unmark", { name: p.name }) : t("e2ee.mark", { name: p.name });
    const button = h(
      "button",
      { type: "button", class: "btn btn-small" + (verified ? " is-verified" : ""), "aria-pressed": String(verified), dataset: { testid: "verify", action: "verify" }, onclick: () => this.onVerify(p.identity, !verified) },
      verified ? svgIcon(ICONS.shield, "icon") : null,
      verified ? t("e2ee.verified") : t("e2ee.mark_short"),
    );
    button.title = label;
    button.setAttribute("aria-label", label);
    return h("li", { class: "person", dataset: { verifyRow: p.identity, verified: String(verified) } }, avatar, h("div", { class: "person-text" }, h("span", { class: "person-name" }, p.name)), h("div", { class: "person-actions" }, button));
  }
}
