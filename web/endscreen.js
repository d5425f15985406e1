// The page shown instead of the meeting: a bad link, a refused join, or the end of a meeting.

import { pageTitle } from "./brand.js";
import { byId, h, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";

const TOKEN_REASONS = {
  expired: "expired",
  wrong_room: "wrong_room",
  revoked: "revoked",
  not_yet_valid: "not_yet_valid",
};

const REFUSALS = {
  room_full: "room_full",
  room_locked: "room_locked",
  removed: "removed",
  room_not_found: "room_not_found",
  invalid_room_name: "room_not_found",
  forbidden: "forbidden",
  unsupported_version: "outdated",
  lobby_denied: "lobby_denied",
  lobby_full: "lobby_full",
  rate_limited: "rate_limited",
  e2ee_unsupported: "e2ee_unsupported",
};

/** Which end screen fits a Meeting `ended` reason (or a token problem found before joining). */
export function endScreenKey(reason) {
  switch (reason.kind) {
    case "token":
      return reason.problem === "missing" ? "missing" : reason.problem === "malformed" ? "invalid" : reason.problem;
    case "refused":
      if (reason.code === "token_rejected") return TOKEN_REASONS[reason.reason] || "invalid";
      return REFUSALS[reason.code] || "join_failed";
    case "kicked":
      if (reason.reason === "duplicate_identity") return "duplicate";
      if (reason.reason === "token_revoked") return "revoked";
      return "removed";
    case "room_closed":
      return reason.reason === "ended" ? "ended" : "closed";
    case "left":
    case "connection_lost":
    case "unreachable":
      return reason.kind;
    default:
      return "join_failed";
  }
}

/** Screens that offer to join again with the same link (when it is still in memory). */
const CAN_RETRY = new Set(["left", "duplicate", "connection_lost", "unreachable", "room_full", "room_locked", "join_failed", "lobby_full", "rate_limited"]);
const IS_PROBLEM = new Set(["missing", "invalid", "expired", "wrong_room", "revoked", "not_yet_valid", "room_full", "room_locked", "room_not_found", "forbidden", "outdated", "join_failed", "unreachable", "connection_lost", "lobby_denied", "lobby_full", "rate_limited", "e2ee_unsupported"]);

export class EndScreen {
  constructor({ i18n, brand = null }) {
    this.i18n = i18n;
    this.brand = brand;
    this.view = byId("view-end");
    this.card = byId("end-card");
    this._current = null;
    i18n.addEventListener("change", () => this._current && this._render());
  }

  /**
   * Shows the screen for `key`; `onRetry` (optional) becomes a "join again" button, `onSignOut`
   * (for someone who came in by single sign-on) a "sign out" one.
   */
  show(key, { onRetry = null, onSignOut = null, params = {} } = {}) {
    this._current = { key, onRetry, onSignOut, params };
    this._render();
    for (const v of document.querySelectorAll(".view")) v.hidden = v !== this.view;
    document.title = pageTitle(this.i18n, this.brand, this.i18n.t(`end.${key}.title`));
    const title = byId("end-title");
    title.focus();
  }

  _render() {
    const { key, onRetry, onSignOut, params } = this._current;
    const t = (k) => this.i18n.t(k, params);
    this.card.dataset.reason = key;
    this.card.classList.toggle("end-problem", IS_PROBLEM.has(key));
    byId("end-icon").replaceChildren(svgIcon(IS_PROBLEM.has(key) ? ICONS.warning : ICONS.info, "icon end-icon-svg"));
    byId("end-title").textContent = t(`end.${key}.title`);
    byId("end-text").textContent = t(`end.${key}.text`);
    const actions = byId("end-actions");
    actions.replaceChildren();
    if (onRetry && CAN_RETRY.has(key)) {
      const label = key === "left" || key === "duplicate" ? "end.rejoin" : "end.retry";
      actions.append(h("button", { type: "button", class: "btn btn-primary", dataset: { testid: "rejoin" }, onclick: onRetry }, t(label)));
    }
    if (onSignOut) {
      actions.append(h("button", { type: "button", class: "btn", dataset: { testid: "sign-out" }, onclick: onSignOut }, t("end.sign_out")));
    }
  }
}
