"""Node-to-node signatures: only the cluster secret's holder can relay or forward."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from confserver.cluster.auth import WINDOW, ClusterAuthError, cluster_key, sign, verify

KEY = cluster_key("", "s" * 43)


def test_a_signed_request_verifies_and_names_its_node() -> None:
    header = sign(KEY, "node-a", "GET", "/cluster/v1/ws", 1000.0)
    assert verify(KEY, header, "GET", "/cluster/v1/ws", 1000.0) == "node-a"
    assert verify(KEY, header, "get", "/cluster/v1/ws", 1000.0 + WINDOW) == "node-a"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"key": cluster_key("", "t" * 43)}, "bad_signature"),
        ({"method": "POST"}, "bad_signature"),
        ({"path": "/cluster/v1/disconnect"}, "bad_signature"),
        ({"now": 1000.0 + WINDOW + 1}, "stale"),
        ({"now": 1000.0 - WINDOW - 1}, "stale"),
    ],
)
def test_a_changed_request_is_refused(change: dict[str, object], reason: str) -> None:
    header = sign(KEY, "node-a", "GET", "/cluster/v1/ws", 1000.0)
    args: dict[str, object] = {"key": KEY, "method": "GET", "path": "/cluster/v1/ws", "now": 1000.0, **change}
    with pytest.raises(ClusterAuthError) as e:
        verify(args["key"], header, args["method"], args["path"], args["now"])  # type: ignore[arg-type]
    assert e.value.reason == reason


def test_a_forged_node_name_does_not_verify() -> None:
    header = sign(KEY, "node-a", "GET", "/p", 1000.0).replace("node=node-a", "node=node-b")
    with pytest.raises(ClusterAuthError, match="bad_signature"):
        verify(KEY, header, "GET", "/p", 1000.0)


def test_the_configured_secret_wins_over_the_derived_one() -> None:
    assert cluster_key("x" * 32, "s" * 43) == b"x" * 32
    assert cluster_key("", "s" * 43) != cluster_key("", "t" * 43)
    assert cluster_key("", "s" * 43) != ("s" * 43).encode()  # never the API secret itself


@given(
    st.one_of(st.none(), st.text(max_size=400), st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
)
def test_any_header_is_refused_with_a_reason_never_an_exception(header: str | None) -> None:
    with pytest.raises(ClusterAuthError) as e:
        verify(KEY, header, "GET", "/cluster/v1/ws", 1000.0)
    assert e.value.reason in {"missing", "malformed", "stale", "bad_signature"}


@pytest.mark.parametrize("skew", [-60.0, 60.0])
def test_a_node_whose_clock_is_a_minute_off_is_still_trusted(skew: float) -> None:
    header = sign(KEY, "node-a", "POST", "/cluster/v1/disconnect", 1000.0 + skew)
    assert verify(KEY, header, "POST", "/cluster/v1/disconnect", 1000.0) == "node-a"
