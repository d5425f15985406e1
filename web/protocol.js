// The signaling protocol, version 1 (docs/PROTOCOL.md). No DOM code here.

export const PROTOCOL_VERSION = 1;

/** Reads the join token from the URL fragment (never the query string) and removes it from the
 *  address bar so it does not stay in history or get shared by copy and paste. */
export function takeTokenFromFragment(loc, history) {
  const params = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (token && history && history.replaceState) {
    history.replaceState(null, "", loc.pathname);
  }
  return token;
}

export class Signaling extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
  }

  connect(token, room, extra = {}) {
    this.ws = new WebSocket(this.url);
    this.ws.addEventListener("open", () => {
      this.send({ type: "join", v: PROTOCOL_VERSION, token, room, ...extra });
    });
    this.ws.addEventListener("message", (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
      this.dispatchEvent(new CustomEvent("message", { detail: msg }));
    });
    this.ws.addEventListener("close", (ev) => {
      this.dispatchEvent(new CustomEvent("closed", { detail: { code: ev.code, reason: ev.reason } }));
    });
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  chat(text, to) {
    this.send(to ? { type: "chat", text, to } : { type: "chat", text });
  }

  leave() {
    this.send({ type: "leave" });
  }
}
