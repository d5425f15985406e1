// The pre-join page: name, camera and microphone preview, device choice, microphone level, and
// joining with camera and microphone on or off.

import { pageTitle } from "./brand.js";
import { LevelMeter, classifyMediaError, listDevices, onDeviceChange, openCamera, openMicrophone } from "./devices.js";
import { byId, h, initials, svgIcon, hueOf } from "./dom.js";
import { ICONS } from "./icons.js";

const PREFS_KEY = "conf.prejoin";
const JOIN_WAIT_FOR_DEVICES_MS = 5000;

function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS_KEY)) || {};
  } catch {
    return {};
  }
}

function savePrefs(prefs) {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
  } catch {
    // storage disabled: preferences are not kept
  }
}

export class PreJoin {
  /** `onJoin({name, tracks: {camera, microphone}, devices: {cameraId, micId}, state})` */
  /** `title`: the meeting's display title (roomtitle.js). */
  constructor({ i18n, brand = null, claims, title, onJoin }) {
    this.i18n = i18n;
    this.brand = brand;
    this.claims = claims;
    this.title = title;
    this.onJoin = onJoin;
    const perms = new Set(claims.permissions);
    this.canVideo = perms.has("publish_video");
    this.canAudio = perms.has("publish_audio");
    const prefs = loadPrefs();
    this.camOn = this.canVideo && prefs.camOn !== false;
    this.micOn = this.canAudio && prefs.micOn !== false;
    this.cameraId = prefs.cameraId || null;
    this.micId = prefs.micId || null;
    this.camTrack = null;
    this.micTrack = null;
    this.meter = null;
    this.problems = { camera: null, microphone: null };
    this._joined = false;
    this._opening = new Set(); // device requests in flight
    this.el = {
      view: byId("view-prejoin"),
      video: byId("preview-video"),
      off: byId("preview-off"),
      avatar: byId("preview-avatar"),
      offText: byId("preview-off-text"),
      mic: byId("pj-mic"),
      cam: byId("pj-cam"),
      meter: byId("pj-meter"),
      meterBar: byId("pj-meter-bar"),
      notice: byId("pj-device-notice"),
      room: byId("pj-room"),
      name: byId("pj-name"),
      nameHint: byId("pj-name-hint"),
      role: byId("pj-role"),
      devices: byId("pj-devices"),
      camSelect: byId("pj-camera-select"),
      micSelect: byId("pj-mic-select"),
      form: byId("pj-form"),
      join: byId("pj-join"),
    };
  }

  async show() {
    const { el, claims } = this;
    for (const v of document.querySelectorAll(".view")) v.hidden = v !== el.view;
    el.room.textContent = this.title;
    el.room.dir = "auto";
    el.name.value = claims.name;
    const canRename = claims.permissions.includes("update_name");
    el.name.readOnly = !canRename;
    el.name.classList.toggle("readonly", !canRename);
    el.mic.addEventListener("click", () => this.toggleMic());
    el.cam.addEventListener("click", () => this.toggleCamera());
    el.camSelect.addEventListener("change", () => this._switchCamera(el.camSelect.value));
    el.micSelect.addEventListener("change", () => this._switchMic(el.micSelect.value));
    el.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this._join();
    });
    el.name.addEventListener("input", () => this._renderPreview());
    // The audio level meter needs the page to have been touched once (autoplay rules).
    const wake = () => this.meter && this.meter.resume();
    document.addEventListener("pointerdown", wake);
    document.addEventListener("keydown", wake);
    this.i18n.addEventListener("change", () => this._renderAll());
    onDeviceChange(() => this._refreshDevices());
    this._renderAll();
    el.join.focus();
    await Promise.all([this.camOn ? this._openCamera() : null, this.canAudio ? this._openMic() : null]);
    await this._refreshDevices();
    this._renderAll();
  }

  hide() {
    this.el.view.hidden = true;
    if (this.meter) this.meter.stop();
    this.meter = null;
  }

  // --- devices ------------------------------------------------------------------------------

  _track(promise) {
    this._opening.add(promise);
    promise.finally(() => this._opening.delete(promise));
    return promise;
  }

  _openCamera() {
    return this._track(this._openCameraNow());
  }

  _openMic() {
    return this._track(this._openMicNow());
  }

  async _openCameraNow() {
    try {
      const track = await openCamera(this.cameraId);
      if (this._joined || !this.camOn) {
        track.stop();
        return;
      }
      this._setCameraTrack(track);
      this.problems.camera = null;
    } catch (err) {
      if (this.cameraId && classifyMediaError(err) === "not_found") {
        this.cameraId = null; // the remembered camera is gone: take the default one
        return this._openCameraNow();
      }
      this.problems.camera = classifyMediaError(err);
      this.camOn = false;
    }
    this._renderAll();
    return undefined;
  }

  _setCameraTrack(track) {
    if (this.camTrack) this.camTrack.stop();
    this.camTrack = track;
    this.el.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) {
      this.cameraId = track.getSettings().deviceId || this.cameraId;
      track.addEventListener("ended", () => {
        if (this.camTrack === track) {
          this.camTrack = null;
          this.camOn = false;
          this._renderAll();
        }
      });
    }
  }

  async _openMicNow() {
    try {
      const track = await openMicrophone(this.micId);
      if (this._joined) {
        track.stop();
        return;
      }
      if (this.micTrack) this.micTrack.stop();
      this.micTrack = track;
      this.micId = track.getSettings().deviceId || this.micId;
      track.enabled = this.micOn;
      this._startMeter();
      this.problems.microphone = null;
    } catch (err) {
      if (this.micId && classifyMediaError(err) === "not_found") {
        this.micId = null;
        return this._openMicNow();
      }
      this.problems.microphone = classifyMediaError(err);
      this.micOn = false;
    }
    this._renderAll();
    return undefined;
  }

  _startMeter() {
    if (this.meter) this.meter.stop();
    this.meter = new LevelMeter(this.micTrack, (level) => this._showLevel(this.micOn ? level : 0));
    this.meter.resume();
  }

  _showLevel(level) {
    const pct = Math.round(level * 100);
    this.el.meterBar.style.setProperty("--level", `${pct}%`);
    this.el.meter.setAttribute("aria-valuenow", String(pct));
  }

  async _refreshDevices() {
    const { cameras, microphones } = await listDevices();
    fillSelect(this.el.camSelect, cameras, this.cameraId, (i) => this.i18n.t("prejoin.camera_n", { n: i + 1 }));
    fillSelect(this.el.micSelect, microphones, this.micId, (i) => this.i18n.t("prejoin.microphone_n", { n: i + 1 }));
    this.el.camSelect.disabled = !this.canVideo || cameras.length === 0;
    this.el.micSelect.disabled = !this.canAudio || microphones.length === 0;
  }

  async _switchCamera(deviceId) {
    this.cameraId = deviceId || null;
    if (this.camOn) await this._openCamera();
  }

  async _switchMic(deviceId) {
    this.micId = deviceId || null;
    await this._openMic();
  }

  async toggleCamera() {
    if (!this.canVideo) return;
    this.camOn = !this.camOn;
    if (this.camOn) {
      this._renderAll();
      await this._openCamera();
    } else {
      this._setCameraTrack(null);
      this._renderAll();
    }
  }

  async toggleMic() {
    if (!this.canAudio) return;
    this.micOn = !this.micOn;
    if (this.micOn && !this.micTrack) await this._openMic();
    if (this.micTrack) this.micTrack.enabled = this.micOn;
    this._renderAll();
  }

  // --- join ---------------------------------------------------------------------------------

  async _join() {
    if (this._joined || this._joining) return;
    const name = this.el.name.value.trim();
    if (!name) {
      this.el.name.focus();
      return;
    }
    // Joining while the camera or microphone is still starting: wait for it (a few seconds at most).
    this._joining = true;
    this.el.join.disabled = true;
    const pending = Promise.allSettled([...this._opening]);
    await Promise.race([pending, new Promise((resolve) => setTimeout(resolve, JOIN_WAIT_FOR_DEVICES_MS))]);
    this._joined = true;
    savePrefs({ camOn: this.camOn, micOn: this.micOn, cameraId: this.cameraId, micId: this.micId });
    if (this.meter) this.meter.stop();
    this.meter = null;
    const micTrack = this.micTrack;
    if (micTrack) micTrack.enabled = this.micOn;
    const camTrack = this.camOn ? this.camTrack : null;
    this.el.video.srcObject = null;
    this.onJoin({
      name: name !== this.claims.name ? name : null,
      tracks: { camera: camTrack, microphone: micTrack },
      devices: { cameraId: this.cameraId, micId: this.micId },
      state: { audio_muted: !this.micOn || !micTrack, video_muted: !camTrack, hand_raised: false },
    });
  }

  // --- rendering ----------------------------------------------------------------------------

  _renderAll() {
    const { el, i18n } = this;
    const t = (k, p) => i18n.t(k, p);
    document.title = pageTitle(i18n, this.brand, t("prejoin.page_title", { room: this.title }));
    renderToggle(el.mic, this.micOn, this.micOn ? ICONS.mic : ICONS.micOff, t(this.micOn ? "controls.mic_off" : "controls.mic_on"));
    renderToggle(el.cam, this.camOn, this.camOn ? ICONS.cam : ICONS.camOff, t(this.camOn ? "controls.cam_off" : "controls.cam_on"));
    el.mic.disabled = !this.canAudio || this.problems.microphone === "denied" || this.problems.microphone === "insecure";
    el.cam.disabled = !this.canVideo || this.problems.camera === "denied" || this.problems.camera === "insecure";
    el.meter.hidden = !this.canAudio;
    el.devices.hidden = !this.canVideo && !this.canAudio;
    el.nameHint.textContent = el.name.readOnly ? t("prejoin.name_fixed") : "";
    const roleKey = this.claims.role === "moderator" ? "role.moderator_joining" : this.claims.role === "viewer" ? "role.viewer_joining" : "";
    el.role.textContent = roleKey ? t(roleKey) : "";
    el.role.hidden = !roleKey;
    this._renderPreview();
    this._renderNotice();
  }

  _renderPreview() {
    const { el } = this;
    const showVideo = this.camOn && !!this.camTrack;
    el.video.hidden = !showVideo;
    el.off.hidden = showVideo;
    const name = el.name.value.trim() || this.claims.name;
    el.avatar.textContent = initials(name);
    el.avatar.style.setProperty("--hue", String(hueOf(this.claims.identity)));
    const offKey = !this.canVideo ? "prejoin.no_video_permission" : this.camOn ? "prejoin.camera_starting" : "prejoin.camera_off";
    el.offText.textContent = this.i18n.t(offKey);
  }

  _renderNotice() {
    const { camera, microphone } = this.problems;
    const key = noticeKey(camera, microphone);
    const el = this.el.notice;
    el.hidden = !key;
    el.dataset.problem = key || "";
    if (!key) {
      el.replaceChildren();
      return;
    }
    el.replaceChildren(
      svgIcon(ICONS.warning, "icon notice-icon"),
      h("span", {}, this.i18n.t(key)),
      h("button", { type: "button", class: "btn btn-small", onclick: () => this._retryDevices() }, this.i18n.t("prejoin.try_again")),
    );
  }

  async _retryDevices() {
    this.problems = { camera: null, microphone: null };
    if (this.canVideo) this.camOn = true;
    if (this.canAudio) this.micOn = true;
    this._renderAll();
    await Promise.all([this.canVideo ? this._openCamera() : null, this.canAudio ? this._openMic() : null]);
    await this._refreshDevices();
  }
}

/** The pre-join notice for device problems ("denied", "not_found", "in_use", "insecure", ...). */
export function noticeKey(camera, microphone) {
  if (camera === "insecure" || microphone === "insecure") return "devices.insecure";
  if (camera === "denied" && microphone === "denied") return "devices.both_denied";
  if (camera === "denied") return "devices.camera_denied";
  if (microphone === "denied") return "devices.microphone_denied";
  if (camera === "in_use") return "devices.camera_in_use";
  if (microphone === "in_use") return "devices.microphone_in_use";
  if (camera === "not_found" && microphone === "not_found") return "devices.none_found";
  if (camera === "not_found") return "devices.camera_not_found";
  if (microphone === "not_found") return "devices.microphone_not_found";
  if (camera || microphone) return "devices.failed";
  return null;
}

function renderToggle(button, on, icon, label) {
  button.replaceChildren(svgIcon(icon));
  button.dataset.on = String(on);
  button.setAttribute("aria-label", label);
  button.title = label;
  button.classList.toggle("is-off", !on);
}

function fillSelect(select, devices, selectedId, fallbackLabel) {
  const current = select.value || selectedId;
  select.replaceChildren(
    ...devices.map((d, i) => h("option", { value: d.deviceId }, d.label || fallbackLabel(i))),
  );
  if (devices.some((d) => d.deviceId === current)) select.value = current;
}
