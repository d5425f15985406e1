// The meeting page's part of end-to-end encryption: a new E2eeSession (identity key, keys, worker)
// for every join of an E2EE room, the padlock badge, the encryption panel and what tiles and the
// participant list need to know. A browser without encoded transforms leaves the room instead.

import { byId, h, svgIcon } from "./dom.js";
import { E2eeSession } from "./e2ee/session.js";
import { FrameTransforms, encodedTransformSupport } from "./e2ee/transforms.js";
import { ICONS } from "./icons.js";
import { SecurityPanel } from "./securitypanel.js";

const WORKER_URL = "/static/e2ee/worker.js";
const REFUSED = { kind: "refused", code: "e2ee_unsupported" };

export class E2eeCall {
  /** `onToggle()` opens or closes the panel, `onChange()` re-renders, `onFrames()` re-binds video. */
  constructor({ i18n, meeting, onToggle, onChange, onFrames }) {
    this.i18n = i18n;
    this.meeting = meeting;
    this.onChange = onChange;
    this.onFrames = onFrames;
    this.session = null;
    this.verified = new Map(); // identity → public key when compared; kept across reconnects
    this.badge = byId("m-e2ee");
    this.root = byId("panel-e2ee");
    this.panel = new SecurityPanel({ i18n, root: this.root, onClose: onToggle, onVerify: (identity, on) => this.session && this.session.setVerified(identity, on) });
    this.badge.addEventListener("click", onToggle);
    const forward = (type, fn) => meeting.addEventListener(type, (ev) => this.session && fn(this.session, ev.detail));
    forward("e2ee", (s, d) => s.handle(d.message));
    forward("participant-joined", (s, d) => s.joined(d.participant));
    forward("participant-updated", (s, d) => s.updated(d.participant));
    forward("participant-left", (s, d) => s.left(d.participant.sid));
  }

  /** After `joined` in an E2EE room: the transforms for the media session, or null when this
   *  browser cannot encrypt (the meeting then ends with reason e2ee_unsupported). */
  start() {
    const m = this.meeting;
    const mode = encodedTransformSupport();
    let worker = null;
    try {
      if (mode) worker = new Worker(WORKER_URL, { type: "module" });
    } catch {
      worker = null;
    }
    if (!worker) {
      m.quit(REFUSED);
      return null;
    }
    const session = new E2eeSession({ self: m.self, send: (msg) => m.sendMedia(msg), worker, verified: this.verified });
    this.session = session;
    session.addEventListener("safety", () => this.onChange());
    session.addEventListener("status", () => this.onFrames());
    session.addEventListener("log", (ev) => console.warn(ev.detail.message));
    session.addEventListener("failed", () => m.quit(REFUSED));
    session.start([...m.participants.values()]);
    return new FrameTransforms({ worker, mode });
  }

  close() {
    if (!this.session) return;
    this.session.close();
    this.session.worker.terminate();
    this.session = null;
  }

  /** For the stage: whether a sender's frames fail to decrypt (null outside E2EE). */
  get keysMissing() {
    const s = this.session;
    return s ? (sid) => s.senderState(sid) !== "ok" : null;
  }

  /** For the participant list: whether the code was compared with someone (null outside E2EE). */
  get isVerified() {
    const s = this.session;
    return s ? (identity) => s.isVerified(identity) : null;
  }

  /** Shows or hides the panel; the focus goes into it, or back to the badge when it closes. */
  setOpen(open, toggled) {
    this.root.hidden = !open;
    if (open) this.root.querySelector("button")?.focus();
    else if (toggled) this.badge.focus();
  }

  render(people, selfSid, open) {
    const t = (k) => this.i18n.t(k);
    const on = !!(this.meeting.room && this.meeting.room.e2ee);
    this.badge.hidden = !on;
    if (!on) return;
    this.badge.replaceChildren(svgIcon(ICONS.lock, "icon"), h("span", {}, t("e2ee.badge")));
    this.badge.setAttribute("aria-label", t("e2ee.badge_label"));
    this.badge.setAttribute("aria-expanded", String(open));
    this.badge.title = t("e2ee.badge_label");
    if (this.session) this.panel.render({ code: this.session.code, others: people.filter((p) => p.sid !== selfSid), isVerified: this.isVerified });
  }
}
