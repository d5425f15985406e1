// The meeting page: wires the meeting (signaling), the media session and this participant's
// devices to the stage, the control bar, the panels and the notices.

import { AudioPlayer } from "./audioplayer.js";
import { pageTitle } from "./brand.js";
import { canShareScreen } from "./devices.js";
import { byId, h, svgIcon } from "./dom.js";
import { ICONS } from "./icons.js";
import { Admission } from "./lobby.js";
import { LocalMedia } from "./localmedia.js";
import { MediaSession } from "./media.js";
import { Meeting } from "./meeting.js";
import { PeoplePanel } from "./people.js";
import { StatsSampler, rateQuality } from "./quality.js";
import { roomTitle } from "./roomtitle.js";
import { Stage } from "./stage.js";
import { ChatPanel } from "./chat.js";
import { E2eeCall } from "./e2eecall.js";
import { SHORTCUTS, Toolbar } from "./toolbar.js";

const SPEAKER_HOLD_MS = 1500;
const QUIET_ABOVE = 15; // no "joined"/"left" toasts in larger meetings
const QUALITY_INTERVAL_MS = 3000;

export class Call {
  /** `onEnded(reason)` when this client is out of the meeting (Meeting "ended" reasons). */
  constructor({ i18n, brand = null, notices, room, title = room, token, wsUrl, onEnded }) {
    this.i18n = i18n;
    this.brand = brand;
    this.notices = notices;
    this.roomName = room;
    this._title = title; // until the room's own metadata arrives
    this.onEnded = onEnded;
    this.meeting = new Meeting({ url: wsUrl, room, token });
    this.media = null;
    this.local = null;
    this.mode = "grid";
    this.pinned = null;
    this.presenting = true; // a screen share is shown large until the user switches to the grid
    this._screenIds = new Set();
    this.speaker = null;
    this._speakerSince = 0;
    this.speaking = new Set();
    this.panel = null; // "chat" | "people" | null
    this.unread = 0;
    this._sampler = new StatsSampler();
    this._qualityTimer = null;
    this.el = {
      view: byId("view-meeting"),
      room: byId("m-room"),
      lock: byId("m-lock"),
      media: byId("m-media"),
      quality: byId("m-quality"),
      sharing: byId("m-sharing"),
      panel: byId("m-panel"),
      chat: byId("panel-chat"),
      people: byId("panel-people"),
    };
    this.audio = new AudioPlayer(byId("audio-sink"));
    this.admission = new Admission({ i18n, notices, meeting: this.meeting, title: () => this.title(), openPeople: () => this.panel !== "people" && this.togglePanel("people"), onChange: () => this.render() });
  }

  start({ name, tracks, devices, state }) {
    const m = this.meeting;
    this.local = new LocalMedia({ tracks, devices, state });
    this.local.addEventListener("change", (ev) => this._onLocalChange(ev.detail.what));
    this.stage = new Stage({ i18n: this.i18n, root: byId("stage"), onPin: (sid) => this.togglePin(sid), onVisible: (v) => this.media && this.media.setVisible(v) });
    this.toolbar = new Toolbar({
      i18n: this.i18n,
      root: byId("toolbar"),
      actions: {
        mic: () => this.toggleMic(),
        camera: () => this.toggleCamera(),
        share: () => this.toggleShare(),
        hand: () => {
          m.setLocalState({ hand_raised: !m.localState.hand_raised });
          this.render();
        },
        layout: () => this.toggleLayout(),
        chat: () => this.togglePanel("chat"),
        people: () => this.togglePanel("people"),
        leave: () => m.leave(),
        muteAll: () => this.muteAll(),
        lock: () => m.setLocked(!(m.room && m.room.locked)),
        end: () => this.endForAll(),
        shortcuts: () => this.showShortcuts(),
      },
    });
    this.chat = new ChatPanel({
      i18n: this.i18n,
      root: this.el.chat,
      send: (text, to) => m.sendChat(text, to),
      onUnread: (n) => ((this.unread = n), this._renderToolbar()),
      onClose: () => this.togglePanel("chat"),
    });
    this.people = new PeoplePanel({
      i18n: this.i18n,
      root: this.el.people,
      onClose: () => this.togglePanel("people"),
      actions: {
        message: (identity) => (this.togglePanel("chat", true), this.chat.writeTo(identity)),
        mute: (identity, kind) => m.mute(identity, kind),
        askUnmute: (identity) => m.askToUnmute(identity, "audio") && this.notices.toast(this.i18n.t("moderation.asked_unmute", { name: this._name(identity) })),
        remove: (identity) => this.remove(identity),
        muteAll: () => this.muteAll(),
        admit: (identity) => m.admit(identity),
        deny: (identity) => m.deny(identity),
      },
    });
    this.secure = new E2eeCall({ i18n: this.i18n, meeting: m, onToggle: () => this.togglePanel("e2ee"), onChange: () => this.render(), onFrames: () => this.stage.refreshVideo() });
    this._listen();
    for (const v of document.querySelectorAll(".view")) v.hidden = v !== this.el.view;
    this.el.sharing.querySelector("button").addEventListener("click", () => this.local.stopScreen());
    this.el.panel.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.panel && !document.querySelector("dialog[open]")) {
        ev.preventDefault();
        this.togglePanel(this.panel); // closes it; the focus returns to its button
      }
    });
    this.i18n.addEventListener("change", () => this.render());
    document.addEventListener("visibilitychange", () => this.media && this.media.setPaused(document.hidden));
    window.addEventListener("online", () => m.nudge());
    window.addEventListener("offline", () => m.networkLost());
    window.addEventListener("pagehide", () => m.leave());
    document.body.dataset.media = "connecting";
    m.start({ state, name });
    this.render();
  }

  _listen() {
    const m = this.meeting;
    const t = (k, p) => this.i18n.t(k, p);
    m.addEventListener("status", (ev) => this._onStatus(ev.detail));
    m.addEventListener("joined", (ev) => this._onJoined(ev.detail.rejoin));
    m.addEventListener("participant-joined", (ev) => {
      const { participant, returning } = ev.detail;
      if (!returning && m.participants.size < QUIET_ABOVE) this.notices.toast(t("notice.joined", { name: participant.name }));
      this.render();
    });
    m.addEventListener("participant-left", (ev) => {
      const { participant, reason } = ev.detail;
      if (this.pinned === participant.sid) this.pinned = null;
      if (reason === "removed") this.notices.toast(t("notice.removed", { name: participant.name }), { testid: "removed-notice" });
      else if (reason !== "replaced" && m.participants.size < QUIET_ABOVE) this.notices.toast(t("notice.left", { name: participant.name }));
      this.render();
    });
    m.addEventListener("participant-updated", (ev) => {
      const { participant: p, previous } = ev.detail;
      if (p.state.hand_raised && !(previous && previous.state.hand_raised)) this.notices.toast(t("notice.hand_raised", { name: p.name }));
      this.render();
    });
    m.addEventListener("self-updated", () => this.render());
    m.addEventListener("chat", (ev) => this.chat.add(ev.detail.message));
    m.addEventListener("room", (ev) => {
      const { room, previous } = ev.detail;
      if (previous && previous.locked !== room.locked) {
        this.notices.toast(t(room.locked ? "notice.locked" : "notice.unlocked"), { testid: "lock-notice" });
      }
      this.render();
    });
    m.addEventListener("muted-by", (ev) => this._onMutedBy(ev.detail));
    m.addEventListener("unmute-requested", (ev) => {
      if (ev.detail.kind !== "audio" || this.local.micOn) return;
      this.notices.toast(t("notice.unmute_requested", { name: this._name(ev.detail.by) }), {
        action: { label: t("controls.unmute"), onClick: () => this.setMic(true) },
        timeoutMs: 15000,
      });
    });
    m.addEventListener("media", (ev) => this.media && this.media.handle(ev.detail.message));
    m.addEventListener("error", (ev) => this._onError(ev.detail));
    m.addEventListener("rtt", () => this._renderQuality());
    m.addEventListener("ended", (ev) => this._onEnded(ev.detail));
  }

  // --- connection ---------------------------------------------------------------------------

  _onStatus({ status }) {
    document.body.dataset.meeting = status;
    if (status === "reconnecting") {
      this.notices.showBanner(this.i18n.t("banner.reconnecting"));
      this._closeMedia();
      this.render();
    }
  }

  _onJoined(rejoin) {
    const m = this.meeting;
    for (const v of document.querySelectorAll(".view")) v.hidden = v !== this.el.view; // after the lobby
    this.notices.hideBanner();
    if (rejoin) this.notices.toast(this.i18n.t("notice.reconnected"));
    else this.notices.announce(this.i18n.t("notice.you_joined", { room: this.title() }));
    this._closeMedia();
    const e2ee = m.room && m.room.e2ee ? this.secure.start() : null; // null: this browser left
    if (m.room && m.room.e2ee && !e2ee) return;
    const media = new MediaSession({ send: (msg) => m.sendMedia(msg), iceServers: m.iceServers, selfSid: m.self.sid, permissions: m.self.permissions, e2ee });
    this.media = media;
    media.addEventListener("status", (ev) => this._onMediaStatus(ev.detail.status));
    media.addEventListener("tracks", () => this.render());
    media.addEventListener("speakers", (ev) => this._onSpeakers(ev.detail.speakers));
    media.addEventListener("warning", (ev) => console.warn("media:", ev.detail.code, ev.detail.message));
    const tracks = this.local.tracks();
    media.start({ camera: tracks.camera, microphone: tracks.microphone, screen: tracks.screen, screen_audio: tracks.screen_audio });
    media.setPaused(document.hidden);
    this._onMediaStatus(media.status);
    if (!this._qualityTimer) this._qualityTimer = setInterval(() => this._sampleQuality(), QUALITY_INTERVAL_MS);
    this.chat.setEnabled(m.can("chat"));
    this.render();
  }

  _closeMedia() {
    if (this.secure) this.secure.close();
    if (this.media) this.media.close();
    this.media = null;
    this.speaking.clear();
    this._syncAudio();
  }

  _onMediaStatus(status) {
    document.body.dataset.media = status;
    const show = status === "unavailable" || status === "unsupported" || status === "failed";
    this.el.media.hidden = !show;
    if (show) {
      const key = status === "failed" ? "media.failed" : status === "unsupported" ? "media.unsupported" : "media.unavailable";
      const full = this.i18n.t(key);
      this.el.media.replaceChildren(svgIcon(ICONS.warning, "icon"), h("span", { "aria-hidden": "true" }, this.i18n.t(`${key}_short`)), h("span", { class: "visually-hidden" }, full));
      this.el.media.title = full;
      this.el.media.dataset.status = status;
    }
    this.render();
  }

  _onEnded(reason) {
    clearInterval(this._qualityTimer);
    this._qualityTimer = null;
    this._closeMedia();
    this.local.stopAll();
    this.notices.hideBanner();
    document.body.dataset.meeting = "ended";
    this.onEnded(reason);
  }

  _onError({ code, ref }) {
    const known = ["forbidden", "participant_not_found", "chat_too_long", "rate_limited", "store_unavailable"];
    const key = known.includes(code) ? `errors.${code}` : "errors.generic";
    this.notices.toast(this.i18n.t(key, { what: ref || "" }), { kind: "error" });
  }

  // --- own devices --------------------------------------------------------------------------

  toggleMic() {
    return this.setMic(!this.local.micOn);
  }

  async setMic(on) {
    if (on && !this.meeting.can("publish_audio")) return;
    try {
      await this.local.setMic(on);
    } catch (problem) {
      this._deviceProblem("microphone", problem);
      return;
    }
    this.meeting.setLocalState({ audio_muted: !this.local.micOn });
    this.render();
  }

  async toggleCamera() {
    const on = !this.local.camOn;
    if (on && !this.meeting.can("publish_video")) return;
    try {
      await this.local.setCamera(on);
    } catch (problem) {
      this._deviceProblem("camera", problem);
    }
  }

  async toggleShare() {
    if (this.local.sharing) {
      this.local.stopScreen();
      return;
    }
    if (!this.media || !this.media.available) {
      this.notices.toast(this.i18n.t("media.share_unavailable"), { kind: "error" });
      return;
    }
    try {
      await this.local.startScreen();
    } catch (problem) {
      if (problem !== "cancelled") this._deviceProblem("screen", problem);
    }
  }

  _deviceProblem(device, problem) {
    this.notices.toast(this.i18n.t(`devices.in_call_${problem === "denied" ? "denied" : "failed"}`, { device: this.i18n.t(`devices.name_${device}`) }), { kind: "error" });
  }

  _onLocalChange(what) {
    const tracks = this.local.tracks();
    if (what === "camera") {
      this.meeting.setLocalState({ video_muted: !tracks.camera });
      if (this.media) this.media.setLocalTrack("camera", tracks.camera);
    } else if (what === "microphone") {
      if (this.media) this.media.setLocalTrack("microphone", tracks.microphone);
    } else if (what === "screen") {
      if (this.media) {
        this.media.setLocalTrack("screen", tracks.screen);
        if (tracks.screen_audio || !tracks.screen) this.media.setLocalTrack("screen_audio", tracks.screen_audio);
      }
      this.notices.announce(this.i18n.t(tracks.screen ? "notice.sharing" : "notice.sharing_stopped"));
    }
    this.render();
  }

  _onMutedBy({ kind, by }) {
    const name = this._name(by);
    if (kind === "audio") {
      if (this.local.microphone) this.local.microphone.enabled = false;
      this.local.micOn = false;
      this.notices.toast(this.i18n.t("notice.muted_by", { name }), { testid: "muted-notice" });
    } else {
      if (this.local.camOn) this.local.setCamera(false);
      this.notices.toast(this.i18n.t("notice.camera_stopped_by", { name }), { testid: "muted-notice" });
    }
    this.render();
  }

  // --- moderation ---------------------------------------------------------------------------

  async muteAll() {
    const ok = await this.notices.confirm({ title: this.i18n.t("moderation.mute_all_title"), text: this.i18n.t("moderation.mute_all_text"), confirmLabel: this.i18n.t("moderation.mute_all") });
    if (!ok) return;
    const n = this.meeting.muteAll();
    this.notices.toast(this.i18n.plural("moderation.muted_count", n));
  }

  async remove(identity) {
    const name = this._name(identity);
    const ok = await this.notices.confirm({ title: this.i18n.t("moderation.remove_title", { name }), text: this.i18n.t("moderation.remove_text"), confirmLabel: this.i18n.t("moderation.remove_confirm"), danger: true });
    if (ok) this.meeting.kick(identity);
  }

  async endForAll() {
    const ok = await this.notices.confirm({ title: this.i18n.t("moderation.end_title"), text: this.i18n.t("moderation.end_text"), confirmLabel: this.i18n.t("moderation.end_confirm"), danger: true });
    if (ok) this.meeting.endForAll();
  }

  // --- layout -------------------------------------------------------------------------------

  togglePin(sid) {
    this.pinned = this.pinned === sid ? null : sid;
    this.render();
  }

  toggleLayout() {
    const toGrid = this.stage.layout !== "grid";
    this.mode = toGrid ? "grid" : "speaker";
    this.presenting = !toGrid;
    if (toGrid) this.pinned = null;
    this.render();
  }

  togglePanel(name, forceOpen = false) {
    const open = forceOpen || this.panel !== name;
    this.panel = open ? name : null;
    this.el.panel.hidden = !this.panel;
    this.el.chat.hidden = this.panel !== "chat";
    this.el.people.hidden = this.panel !== "people";
    this.secure.setOpen(this.panel === "e2ee", name === "e2ee");
    this.chat.setOpen(this.panel === "chat");
    if (this.panel === "chat") this.chat.focus();
    else if (this.panel === "people") this.el.people.querySelector("button")?.focus();
    else if (name !== "e2ee") byId(`toolbar`).querySelector(`[data-testid=${name === "chat" ? "chat-toggle" : "people-toggle"}]`)?.focus();
    this.render();
  }

  _onSpeakers(speakers) {
    // The server lists the active speakers, loudest first; `level` is only a snapshot.
    this.speaking = new Set(speakers.map((s) => s.sid));
    const top = speakers.find((s) => s.sid !== this.meeting.self.sid);
    const now = performance.now();
    if (top && top.sid !== this.speaker && now - this._speakerSince > SPEAKER_HOLD_MS) {
      this.speaker = top.sid;
      this._speakerSince = now;
    }
    this.render();
  }

  showShortcuts() {
    const t = (k) => this.i18n.t(k);
    const rows = SHORTCUTS.map((s) => h("tr", {}, h("th", { scope: "row" }, h("kbd", {}, s.key.toUpperCase())), h("td", {}, t(s.label))));
    this.notices.inform(t("shortcuts.title"), [h("table", { class: "shortcuts" }, h("tbody", {}, ...rows)), h("p", { class: "hint" }, t("shortcuts.note"))]);
  }

  // --- rendering ----------------------------------------------------------------------------

  render() {
    const m = this.meeting;
    if (!m.self) return;
    const people = m.everyone();
    const media = this.media;
    const screens = [];
    if (media) for (const pub of media.remote.values()) if (pub.source === "screen") screens.push({ sid: pub.sid, id: pub.id });
    if (screens.some((s) => !this._screenIds.has(s.id))) this.presenting = true; // a new share comes first
    this._screenIds = new Set(screens.map((s) => s.id));
    this.stage.render({
      people,
      selfSid: m.self.sid,
      pinned: this.pinned,
      speaker: this.speaker,
      speaking: this.speaking,
      screens,
      presenting: this.presenting,
      mode: this.mode,
      videoFor: (sid, source) => this._videoFor(sid, source),
      keysMissing: this.secure.keysMissing,
    });
    this.people.render({ people, selfSid: m.self.sid, isModerator: m.isModerator, canChat: m.can("chat"), waiting: m.waiting, isVerified: this.secure.isVerified });
    this.secure.render(people, m.self.sid, this.panel === "e2ee");
    this.chat.setPeople(people, m.self.identity);
    this._renderToolbar();
    this._renderTopbar(people.length);
    this._syncAudio();
  }

  _renderToolbar() {
    const m = this.meeting;
    if (!m.self) return;
    this.toolbar.render({
      micOn: this.local.micOn,
      camOn: this.local.camOn,
      sharing: this.local.sharing,
      hand: !!m.localState.hand_raised,
      layout: this.stage.layout,
      chatOpen: this.panel === "chat",
      peopleOpen: this.panel === "people",
      unread: this.unread,
      count: m.everyone().length,
      canAudio: m.can("publish_audio"),
      canVideo: m.can("publish_video"),
      canShare: m.can("publish_screen") && canShareScreen(),
      shareAvailable: !!this.media && this.media.available,
      isModerator: m.isModerator,
      locked: !!(m.room && m.room.locked),
      waiting: m.isModerator ? m.waiting.filter((w) => !w.away).length : 0,
    });
  }

  _renderTopbar(count) {
    const t = (k, p) => this.i18n.t(k, p);
    const locked = !!(this.meeting.room && this.meeting.room.locked);
    this.el.room.textContent = this.title();
    this.el.room.dir = "auto";
    this.el.lock.hidden = !locked;
    this.el.lock.replaceChildren(svgIcon(ICONS.lock, "icon"), h("span", {}, t("room.locked")));
    document.title = pageTitle(this.i18n, this.brand, t("room.page_title", { room: this.title(), count }));
    this.el.sharing.hidden = !this.local.sharing;
    this.el.sharing.querySelector("span").textContent = t("sharing.active");
    this.el.sharing.querySelector("button").textContent = t("controls.stop_share_long");
    this._renderQuality();
  }

  /** The meeting's display title: from the room's metadata once joined. */
  title() {
    const room = this.meeting.room;
    return room ? roomTitle(room.metadata, this.roomName) : this._title;
  }

  _videoFor(sid, source) {
    if (sid === this.meeting.self.sid) return source === "camera" ? this.local.tracks().camera : null;
    if (!this.media) return null;
    const pub = this.media.publication(sid, source);
    return pub && !pub.muted ? this.media.receivedTrack(pub.id) : null;
  }

  _syncAudio() {
    this.audio.sync(this.media ? this.media.audioTracks() : []);
  }

  async _sampleQuality() {
    const pcs = this.media ? this.media.peerConnections() : [];
    this._stats = pcs.length ? await this._sampler.sample(pcs) : null;
    this._renderQuality();
  }

  _renderQuality() {
    const rtt = this._stats && this._stats.rttMs !== null ? this._stats.rttMs : this.meeting.rttMs;
    const level = this.meeting.status === "joined" ? rateQuality({ rttMs: rtt, lossRatio: this._stats ? this._stats.lossRatio : null }) : "poor";
    const el = this.el.quality;
    el.dataset.quality = level;
    const label = this.i18n.t(`quality.${level}`) + (rtt !== null && rtt !== undefined ? ` · ${Math.round(rtt)} ms` : "");
    el.setAttribute("aria-label", `${this.i18n.t("quality.label")}: ${label}`);
    el.title = el.getAttribute("aria-label");
  }

  _name(identity) {
    const p = identity ? this.meeting.byIdentity(identity) : null;
    return p ? p.name : identity || this.i18n.t("moderation.a_moderator");
  }
}
