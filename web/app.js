// The meeting page's UI layer: renders what the protocol layer reports.
import { Signaling, takeTokenFromFragment } from "./protocol.js";

const $ = (id) => document.getElementById(id);
const room = decodeURIComponent(location.pathname.split("/").pop());
const people = new Map();

const MESSAGES = {
  missing_token: "This link has no join token. Ask the organiser for a new link.",
  token_rejected: "This join link is not valid (it may have expired). Ask the organiser for a new link.",
  room_full: "The meeting is full.",
  room_locked: "The meeting is locked.",
  room_not_found: "This meeting does not exist.",
};

function showError(code, fallback) {
  $("error").textContent = MESSAGES[code] || fallback || code;
  $("error").hidden = false;
  $("meeting").hidden = true;
  $("status").textContent = "";
}

function renderPeople() {
  const list = $("participants");
  list.replaceChildren();
  for (const p of people.values()) {
    const li = document.createElement("li");
    li.dataset.participant = p.identity;
    li.textContent = `${p.name} (${p.role})`;
    list.append(li);
  }
}

function addChat(msg) {
  const li = document.createElement("li");
  const who = document.createElement("strong");
  who.textContent = msg.from.name + (msg.to ? " (private)" : "") + ": ";
  li.append(who, document.createTextNode(msg.text));
  $("chat-log").append(li);
}

$("room-title").textContent = room;
const token = takeTokenFromFragment(location, history);
if (!token) {
  showError("missing_token");
} else {
  const sig = new Signaling(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  sig.addEventListener("joined", (ev) => {
    const m = ev.detail;
    people.clear();
    for (const p of [m.self, ...m.participants]) people.set(p.sid, p);
    renderPeople();
    $("meeting").hidden = false;
    $("status").textContent = "Connected";
  });
  sig.addEventListener("participant_joined", (ev) => { people.set(ev.detail.participant.sid, ev.detail.participant); renderPeople(); });
  sig.addEventListener("participant_updated", (ev) => { people.set(ev.detail.participant.sid, ev.detail.participant); renderPeople(); });
  sig.addEventListener("participant_left", (ev) => { people.delete(ev.detail.sid); renderPeople(); });
  sig.addEventListener("chat", (ev) => addChat(ev.detail));
  sig.addEventListener("error", (ev) => { if (ev.detail.ref === "join") showError(ev.detail.code, ev.detail.message); });
  sig.addEventListener("kicked", () => showError("kicked", "You were removed from the meeting."));
  sig.addEventListener("room_closed", () => showError("room_closed", "The meeting has ended."));
  sig.addEventListener("closed", () => { if (!$("error").hidden) return; $("status").textContent = "Disconnected"; });
  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("chat-input").value.trim();
    if (text) sig.chat(text);
    $("chat-input").value = "";
  });
  $("leave").addEventListener("click", () => { sig.leave(); showError("left", "You left the meeting."); });
  sig.connect(token, room);
}
