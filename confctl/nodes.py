"""``confctl node``: list the nodes of a deployment, drain one for an upgrade, or let it serve again."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from confctl import output
from confctl.client import AdminClient

Command = Callable[..., argparse.ArgumentParser]
ClientFactory = Callable[[argparse.Namespace], AdminClient]


def render_nodes(doc: dict[str, Any]) -> str:
    nodes = doc.get("nodes", [])
    if not nodes:
        return "No nodes."
    me = doc.get("self", "")
    rows = [("ID", "ADDRESS", "STATE", "ROOMS", "PARTICIPANTS", "LOAD")]
    for n in nodes:
        rows.append(
            (
                str(n.get("id", "")) + (" *" if n.get("id") == me else ""),
                str(n.get("url", "")),
                str(n.get("state", "")),
                str(n.get("rooms", "")),
                str(n.get("participants", "")),
                f"{float(n.get('load', 0.0)):.2f}",
            )
        )
    widths = [max(len(output.clean(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(output.clean(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines) + "\n(* the node that answered)"


def cmd_list(args: argparse.Namespace, client: AdminClient) -> int:
    doc = client.request("GET", ["nodes"])
    print(output.to_json(doc) if args.json else render_nodes(doc))
    return 0


def cmd_drain(args: argparse.Namespace, client: AdminClient) -> int:
    method = "DELETE" if args.undo else "POST"
    doc = client.request(method, ["nodes", args.node_id, "drain"])
    if args.json:
        print(output.to_json(doc))
    elif args.undo:
        print(f"Node {output.clean(args.node_id)} takes new rooms again.")
    else:
        print(
            f"Node {output.clean(args.node_id)} is draining: it takes no new rooms and reports not ready; "
            "its meetings go on until they end."
        )
    return 0


def register(sub: Any, command: Command, client_of: ClientFactory) -> None:
    """The ``node`` commands, under the group ``sub``."""
    command(sub, "list", lambda a: cmd_list(a, client_of(a)), "list the nodes: address, state, rooms, load")
    p = command(
        sub,
        "drain",
        lambda a: cmd_drain(a, client_of(a)),
        "drain a node before an upgrade: no new rooms there, /readyz not ready, its meetings go on",
    )
    p.add_argument("node_id", metavar="ID", help="the node's id (confctl node list)")
    p.add_argument("--undo", action="store_true", help="let the node take new rooms again")
