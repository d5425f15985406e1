// ICE candidates on the wire. No DOM code here.
//
// A candidate goes to the server as its SDP attribute text ("candidate:…"): the SFU reads that form
// (it also reads an RTCIceCandidateInit object) and every m-line shares one transport, so no MID or
// index is needed. The end of candidates is not sent. Candidates from the server may come in either
// form. TCP candidates are not sent: the SFU takes media over UDP only.

/** The `ice_candidate` message for a local candidate, or null when there is nothing to send. */
export function candidateMessage(target, candidate) {
  if (!candidate || !candidate.candidate) return null;
  if (candidate.protocol === "tcp" || / tcp /i.test(candidate.candidate)) return null;
  return { type: "ice_candidate", target, candidate: candidate.candidate };
}

/** An RTCIceCandidateInit (or null: end of candidates) from what the server sent. */
export function remoteCandidate(candidate) {
  if (!candidate) return null;
  if (typeof candidate === "string") return { candidate, sdpMLineIndex: 0 };
  if (candidate.sdpMid === undefined && candidate.sdpMLineIndex === undefined) return { ...candidate, sdpMLineIndex: 0 };
  return candidate;
}
