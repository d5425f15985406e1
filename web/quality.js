// Connection quality from round-trip time and packet loss. No DOM code here.
//
// Sources: the signaling ping/pong round trip always; with media, the selected ICE candidate
// pair's RTT, loss of received packets (inbound-rtp) and loss reported by the server for what
// this client sends (remote-inbound-rtp).

export function rateQuality({ rttMs = null, lossRatio = null } = {}) {
  if (rttMs === null && lossRatio === null) return "unknown";
  const rtt = rttMs ?? 0;
  const loss = lossRatio ?? 0;
  if (rtt > 600 || loss > 0.08) return "poor";
  if (rtt > 250 || loss > 0.02) return "fair";
  return "good";
}

export class StatsSampler {
  constructor() {
    this._prev = new Map(); // stats id -> {lost, received}
  }

  /** Reads every peer connection once; returns {rttMs, lossRatio} (null when unknown). */
  async sample(peerConnections) {
    let rtt = null;
    let lost = 0;
    let total = 0;
    let remoteLoss = null;
    for (const pc of peerConnections) {
      let report;
      try {
        report = await pc.getStats();
      } catch {
        continue;
      }
      report.forEach((s) => {
        if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated && typeof s.currentRoundTripTime === "number") {
          rtt = Math.max(rtt ?? 0, s.currentRoundTripTime * 1000);
        } else if (s.type === "inbound-rtp" && typeof s.packetsReceived === "number") {
          const prev = this._prev.get(s.id) || { lost: 0, received: 0 };
          const dLost = Math.max(0, (s.packetsLost || 0) - prev.lost);
          const dRecv = Math.max(0, s.packetsReceived - prev.received);
          this._prev.set(s.id, { lost: s.packetsLost || 0, received: s.packetsReceived });
          lost += dLost;
          total += dLost + dRecv;
        } else if (s.type === "remote-inbound-rtp" && typeof s.fractionLost === "number") {
          remoteLoss = Math.max(remoteLoss ?? 0, s.fractionLost);
        }
      });
    }
    let lossRatio = total > 0 ? lost / total : null;
    if (remoteLoss !== null) lossRatio = Math.max(lossRatio ?? 0, remoteLoss);
    return { rttMs: rtt, lossRatio };
  }
}
