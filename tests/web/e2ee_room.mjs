// A simulated E2EE meeting for the key tests: every participant runs a KeyManager and a
// FrameCryptor on one fake clock; a fake server relays key blobs and announces joins, keys, leaves.
import { FrameCryptor } from "../../web/e2ee/cryptor.js";
import { KeyManager, generateIdentity } from "../../web/e2ee/keys.js";

export const OPUS_FRAME = Uint8Array.from({ length: 80 }, (_, i) => (i === 0 ? 0x78 : (i * 13) & 0xff));

export class Room {
  constructor(options = {}) {
    this.t = 1_000_000;
    this.now = () => this.t;
    this.options = options;
    this.people = new Map();
    this.queue = [];
    this.errors = [];
    this.blobsSent = 0;
    this.messagesSent = 0;
  }

  listing() {
    return [...this.people.values()].map((p) => ({ sid: p.sid, identity: p.identity, key: p.key }));
  }

  async add(sid, { identityKeys } = {}) {
    const keys = identityKeys ?? (await generateIdentity());
    const identity = `user-${sid}`;
    const person = {
      sid,
      identity,
      key: keys.publicKey,
      manager: new KeyManager({ sid, identity, identityKeys: keys }, { now: this.now, options: this.options }),
      cryptor: new FrameCryptor({ now: this.now }),
    };
    await this.apply(person, await person.manager.start());
    for (const other of this.people.values()) await this.apply(other, await other.manager.onJoin(sid, identity));
    this.people.set(sid, person);
    const list = this.listing();
    for (const p of this.people.values()) await this.apply(p, await p.manager.onParticipants(list));
    return person;
  }

  /** Leaves without delivering anything; the person keeps every key it had. */
  async leave(sid) {
    const person = this.people.get(sid);
    this.people.delete(sid);
    for (const other of this.people.values()) await this.apply(other, await other.manager.onLeave(sid));
    return person;
  }

  async apply(person, actions) {
    for (const action of actions) {
      if (action.type === "send") {
        this.messagesSent += 1;
        for (const entry of action.message.keys) {
          this.blobsSent += 1;
          this.queue.push({ from: person.sid, to: entry.to, data: entry.data });
        }
      } else if (action.type === "setSendKey") {
        await person.cryptor.setSendKey(action.kid, action.secret);
      } else if (action.type === "setReceiveKey") {
        await person.cryptor.setReceiveKey(action.sender, action.kid, action.secret);
      } else if (action.type === "removeSender") {
        person.cryptor.removeSender(action.sender);
      } else if (action.type === "keyError") {
        this.errors.push({ at: person.sid, ...action });
      }
    }
  }

  async deliver() {
    while (this.queue.length) {
      const msg = this.queue.shift();
      const person = this.people.get(msg.to);
      if (person) await this.apply(person, await person.manager.onKeyMessage(msg.from, msg.data));
    }
  }

  /** Moves the clock `ms` on, running every manager's timers when due and delivering blobs. */
  async advance(ms) {
    const end = this.t + ms;
    await this.deliver();
    for (;;) {
      const due = [...this.people.values()]
        .map((p) => p.manager.nextDeadline())
        .filter((d) => d !== null && d <= end);
      if (due.length === 0) break;
      this.t = Math.max(this.t, Math.min(...due));
      for (const p of this.people.values()) {
        const deadline = p.manager.nextDeadline();
        if (deadline !== null && deadline <= this.t) await this.apply(p, await p.manager.tick());
      }
      await this.deliver();
    }
    this.t = end;
  }

  async frameFrom(sid, frame = OPUS_FRAME) {
    const sealed = await this.people.get(sid).cryptor.encrypt("opus", frame);
    if (!sealed.ok) throw new Error(`cannot encrypt: ${sealed.reason}`);
    return sealed.data;
  }
}
