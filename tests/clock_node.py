"""A Maelstrom-protocol node that tells the time: `read` of any key answers the program's wall
clock (`time.time()`), so a test sees what clock skew did to it. Writes are refused."""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    node = ""
    for line in sys.stdin:
        msg = json.loads(line)
        body = msg["body"]
        reply: dict[str, object] = {"in_reply_to": body.get("msg_id")}
        if body["type"] == "init":
            node = body["node_id"]
            reply["type"] = "init_ok"
        elif body["type"] == "read":
            reply.update(type="read_ok", value=time.time())
        else:
            reply.update(type="error", code=10, text="this node only tells the time")
        sys.stdout.write(json.dumps({"src": node, "dest": msg["src"], "body": reply}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
