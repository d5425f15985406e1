// Local devices: camera, microphone, screen capture, device lists and a microphone level meter.
// No DOM code here (Web media APIs only).

export const CAMERA_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
const MIC_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/** Why a device could not be opened, as a stable word the UI translates:
 *  "denied", "not_found", "in_use", "insecure", "failed". */
export function classifyMediaError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "denied";
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") return "not_found";
  if (name === "NotReadableError" || name === "AbortError" || name === "TrackStartError") return "in_use";
  if (name === "InsecureContext") return "insecure";
  return "failed";
}

function mediaDevices() {
  const md = globalThis.navigator && navigator.mediaDevices;
  if (!md || !md.getUserMedia) {
    const err = new Error("camera and microphone need a secure (https) page");
    err.name = "InsecureContext";
    throw err;
  }
  return md;
}

export async function openCamera(deviceId = null) {
  const video = { ...CAMERA_CONSTRAINTS };
  if (deviceId) video.deviceId = { exact: deviceId };
  const stream = await mediaDevices().getUserMedia({ video, audio: false });
  const track = stream.getVideoTracks()[0];
  track.contentHint = "motion";
  return track;
}

export async function openMicrophone(deviceId = null) {
  const audio = { ...MIC_CONSTRAINTS };
  if (deviceId) audio.deviceId = { exact: deviceId };
  const stream = await mediaDevices().getUserMedia({ audio, video: false });
  return stream.getAudioTracks()[0];
}

/** Asks the user for a screen, window or tab. Returns {video, audio} (audio only for a tab that
 *  plays sound and when the user allows it). */
export async function openScreen() {
  const md = mediaDevices();
  if (!md.getDisplayMedia) {
    const err = new Error("screen sharing is not supported by this browser");
    err.name = "NotSupportedError";
    throw err;
  }
  const stream = await md.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: true });
  const video = stream.getVideoTracks()[0];
  if (video) video.contentHint = "detail";
  return { video, audio: stream.getAudioTracks()[0] || null };
}

export function canShareScreen() {
  const md = globalThis.navigator && navigator.mediaDevices;
  return !!(md && md.getDisplayMedia);
}

/** The devices of each kind: [{deviceId, label}] (labels appear once a permission was given). */
export async function listDevices() {
  const out = { cameras: [], microphones: [], speakers: [] };
  const md = globalThis.navigator && navigator.mediaDevices;
  if (!md || !md.enumerateDevices) return out;
  for (const d of await md.enumerateDevices()) {
    const item = { deviceId: d.deviceId, label: d.label };
    if (d.kind === "videoinput") out.cameras.push(item);
    else if (d.kind === "audioinput") out.microphones.push(item);
    else if (d.kind === "audiooutput") out.speakers.push(item);
  }
  return out;
}

export function onDeviceChange(callback) {
  const md = globalThis.navigator && navigator.mediaDevices;
  if (md && md.addEventListener) md.addEventListener("devicechange", callback);
}

/** The level (0..1) of an audio track, read a few times a second. */
export class LevelMeter {
  constructor(track, onLevel, intervalMs = 100) {
    this._ctx = null;
    this._timer = null;
    const Ctx = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!Ctx || !track) return;
    this._ctx = new Ctx();
    const source = this._ctx.createMediaStreamSource(new MediaStream([track]));
    const analyser = this._ctx.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    this._timer = setInterval(() => {
      if (this._ctx.state === "suspended") return;
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
      const rms = Math.sqrt(sum / buf.length);
      // about -60 dBFS (silence) .. -10 dBFS (loud speech) mapped to 0..1
      const db = 20 * Math.log10(rms || 1e-8);
      onLevel(Math.min(1, Math.max(0, (db + 60) / 50)));
    }, intervalMs);
  }

  /** Browsers start audio contexts suspended until the user interacts with the page. */
  resume() {
    if (this._ctx && this._ctx.state === "suspended") this._ctx.resume().catch(() => {});
  }

  stop() {
    if (this._timer) clearInterval(this._timer);
    this._timer = null;
    if (this._ctx) this._ctx.close().catch(() => {});
    this._ctx = null;
  }
}
