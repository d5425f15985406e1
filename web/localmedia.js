// This participant's own camera, microphone and screen while in the meeting. No DOM code here.
//
// Turning the camera off stops the track, so the camera light goes off; turning the microphone
// off disables the track (unmuting is instant). Every change is reported as a `change` event;
// the call wires it to the media session (what is sent) and to the meeting (what others see).

import { classifyMediaError, openCamera, openMicrophone, openScreen } from "./devices.js";

export class LocalMedia extends EventTarget {
  constructor({ tracks = {}, devices = {}, state = {} }) {
    super();
    this.camera = tracks.camera || null;
    this.microphone = tracks.microphone || null;
    this.screen = null;
    this.screenAudio = null;
    this.cameraId = devices.cameraId || null;
    this.micId = devices.micId || null;
    this.micOn = !!this.microphone && !state.audio_muted;
    if (this.microphone) this.microphone.enabled = this.micOn;
    this._watch(this.camera, "camera");
  }

  get camOn() {
    return !!this.camera && this.camera.readyState === "live";
  }

  get sharing() {
    return !!this.screen && this.screen.readyState === "live";
  }

  /** Turns the microphone on or off; opens it when needed. Throws a classified error word. */
  async setMic(on) {
    if (on && !this.microphone) {
      try {
        this.microphone = await openMicrophone(this.micId);
      } catch (err) {
        throw classifyMediaError(err);
      }
      this._changed("microphone");
    }
    if (this.microphone) this.microphone.enabled = on;
    this.micOn = on && !!this.microphone;
    this._changed("mic-state");
  }

  async setCamera(on) {
    if (on === this.camOn) return;
    if (!on) {
      this.camera.stop();
      this.camera = null;
      this._changed("camera");
      return;
    }
    let track;
    try {
      track = await openCamera(this.cameraId);
    } catch (err) {
      throw classifyMediaError(err);
    }
    this.camera = track;
    this._watch(track, "camera");
    this._changed("camera");
  }

  async startScreen() {
    if (this.sharing) return;
    let captured;
    try {
      captured = await openScreen();
    } catch (err) {
      throw err && err.name === "NotAllowedError" ? "cancelled" : classifyMediaError(err);
    }
    this.screen = captured.video;
    this.screenAudio = captured.audio;
    // the browser's own "Stop sharing" button ends the track
    this.screen.addEventListener("ended", () => this.stopScreen());
    this._changed("screen");
  }

  stopScreen() {
    if (!this.screen) return;
    for (const t of [this.screen, this.screenAudio]) if (t) t.stop();
    this.screen = null;
    this.screenAudio = null;
    this._changed("screen");
  }

  /** Tracks by publication source, null when off. */
  tracks() {
    return {
      camera: this.camOn ? this.camera : null,
      microphone: this.microphone,
      screen: this.sharing ? this.screen : null,
      screen_audio: this.sharing ? this.screenAudio : null,
    };
  }

  stopAll() {
    for (const t of [this.camera, this.microphone, this.screen, this.screenAudio]) if (t) t.stop();
    this.camera = this.microphone = this.screen = this.screenAudio = null;
    this.micOn = false;
  }

  _watch(track, what) {
    if (!track) return;
    track.addEventListener("ended", () => {
      if (what === "camera" && this.camera === track) {
        this.camera = null;
        this._changed("camera");
      }
    });
  }

  _changed(what) {
    this.dispatchEvent(new CustomEvent("change", { detail: { what } }));
  }
}
