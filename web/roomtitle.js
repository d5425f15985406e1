// A meeting's display title: the room's metadata.title when it is usable text, else the room's
// name from the address. The pre-join page asks the server for it with the join token (a title may
// say what a confidential meeting is about); in the meeting it comes with the room (`joined`,
// `room_updated`). Always shown as text. No DOM here.

export const MAX_TITLE_CHARS = 100;
export const TITLE_TIMEOUT_MS = 3000;

// Control characters and bidirectional overrides (which could make a title read as another).
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+/g;

/** The title to show for a room with `metadata`, named `slug` in its address. */
export function roomTitle(metadata, slug) {
  const raw = metadata && typeof metadata === "object" && typeof metadata.title === "string" ? metadata.title : "";
  const clean = raw.replace(UNSAFE, " ").replace(/\s+/g, " ").trim();
  if (!clean) return slug;
  const chars = Array.from(clean);
  return chars.length > MAX_TITLE_CHARS ? `${chars.slice(0, MAX_TITLE_CHARS - 1).join("").trimEnd()}…` : clean;
}

/** The room's metadata.title as the server has it (null when none, refused or unreachable). */
export async function fetchRoomTitle(room, token, { fetchFn = globalThis.fetch, timeoutMs = TITLE_TIMEOUT_MS } = {}) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const resp = await fetchFn(`/r/${encodeURIComponent(room)}/title`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
      credentials: "same-origin",
      cache: "no-store",
      signal: abort.signal,
    });
    if (!resp.ok) return null;
    const data = await resp.json();
    return data && typeof data.title === "string" ? data.title : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}
