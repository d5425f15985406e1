// `media_reset` (a media worker of the server stopped): the media session closes its peer
// connections, forgets the remote tracks and starts again, within the same meeting.
import assert from "node:assert/strict";
import test from "node:test";

import { MediaSession } from "../../web/media.js";

class FakePeerConnection extends EventTarget {
  static made = [];

  constructor(config) {
    super();
    this.config = config;
    this.connectionState = "new";
    this.signalingState = "stable";
    this.closed = false;
    FakePeerConnection.made.push(this);
  }

  close() {
    this.closed = true;
    this.signalingState = "closed";
  }
}

test("media_reset closes both connections, forgets remote tracks and subscribes anew", () => {
  const sent = [];
  const media = new MediaSession({
    send: (msg) => sent.push(msg),
    selfSid: "me",
    permissions: ["subscribe"],
    PeerConnection: FakePeerConnection,
  });
  media.start({});
  const first = media.subscriber.pc;
  media.handle({ type: "track_published", track: { id: "t1", sid: "other", kind: "video", source: "camera" } });
  assert.equal(media.remote.size, 1);
  assert.deepEqual(sent, [{ type: "update_subscription", tracks: [] }]);

  media.handle({ type: "media_reset" });

  assert.equal(first.closed, true);
  assert.equal(media.remote.size, 0);
  assert.notEqual(media.subscriber.pc, first);
  assert.equal(media.subscriber.pc.closed, false);
  assert.equal(media.status, "connecting");
  assert.deepEqual(sent, [
    { type: "update_subscription", tracks: [] },
    { type: "update_subscription", tracks: [] },
  ]);
  media.handle({ type: "track_published", track: { id: "t2", sid: "other", kind: "video", source: "camera" } });
  assert.deepEqual([...media.remote.keys()], ["t2"]);
  media.close();
});

test("a closed media session ignores media_reset", () => {
  const media = new MediaSession({ send: () => {}, selfSid: "me", permissions: ["subscribe"], PeerConnection: FakePeerConnection });
  media.start({});
  media.close();
  media.handle({ type: "media_reset" });
  assert.equal(media.subscriber, null);
  assert.equal(media.status, "closed");
});
