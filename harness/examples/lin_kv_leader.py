"""A correct single-leader lin-kv node for the Maelstrom protocol (stdlib only).

The first node in `node_ids` is the leader and holds the only copy of the data. Every other
node forwards each client request to the leader and relays the leader's reply, so every
operation takes effect at one place, in one order: the store is linearizable. A follower cut
off from the leader does not answer at all (it cannot know whether a forwarded request took
effect), so its clients time out and record an unknown outcome.

Run: python harness/examples/lin_kv_leader.py   (JSON messages on stdin/stdout, one a line)
"""

from __future__ import annotations

import json
import sys
from typing import Any

KEY_DOES_NOT_EXIST = 20
PRECONDITION_FAILED = 22
NOT_SUPPORTED = 10


class LeaderKV:
    def __init__(self) -> None:
        self.node_id = ""
        self.leader = ""
        self.next_id = 0
        self.data: dict[str, Any] = {}
        self.forwarded: dict[int, tuple[str, int | None]] = {}  # my msg_id -> client, its msg_id

    def send(self, dest: str, body: dict[str, Any]) -> None:
        msg = {"src": self.node_id, "dest": dest, "body": body}
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    def reply(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        self.send(msg["src"], {**body, "in_reply_to": msg["body"].get("msg_id")})

    def handle(self, msg: dict[str, Any]) -> None:
        body = msg["body"]
        kind = body.get("type")
        if kind == "init":
            self.node_id = body["node_id"]
            self.leader = body["node_ids"][0]
            self.reply(msg, {"type": "init_ok"})
        elif "in_reply_to" in body and body["in_reply_to"] in self.forwarded:
            client, client_msg_id = self.forwarded.pop(body["in_reply_to"])
            relayed = {k: v for k, v in body.items() if k != "msg_id"}
            self.send(client, {**relayed, "in_reply_to": client_msg_id})
        elif kind in ("read", "write", "cas"):
            if self.node_id == self.leader:
                self.reply(msg, self.apply(body))
            else:
                self.next_id += 1
                self.forwarded[self.next_id] = (msg["src"], body.get("msg_id"))
                self.send(self.leader, {**body, "msg_id": self.next_id})
        elif "msg_id" in body:
            self.reply(msg, {"type": "error", "code": NOT_SUPPORTED, "text": f"{kind}?"})

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        key = str(body["key"])
        kind = body["type"]
        if kind == "write":
            self.data[key] = body["value"]
            return {"type": "write_ok"}
        if key not in self.data:
            if kind == "cas" and body.get("create_if_not_exists"):
                self.data[key] = body["to"]
                return {"type": "cas_ok"}
            return {"type": "error", "code": KEY_DOES_NOT_EXIST, "text": "no such key"}
        if kind == "read":
            return {"type": "read_ok", "value": self.data[key]}
        if self.data[key] != body["from"]:
            return {"type": "error", "code": PRECONDITION_FAILED, "text": "value differs"}
        self.data[key] = body["to"]
        return {"type": "cas_ok"}


def main() -> None:
    node = LeaderKV()
    for line in sys.stdin:
        if line.strip():
            node.handle(json.loads(line))


if __name__ == "__main__":
    main()
