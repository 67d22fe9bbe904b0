"""The reference the room benchmark compares Tongxin with: a bare asyncio
``websockets`` broadcast server speaking the room's protocol for the
messages the load uses. No database, no auth, one process.

Every connection to ``/ws/sessions/<id>/`` gets a ``hello``; a
``question.ask`` is encoded once and broadcast to every connection; votes
mark the question changed and changed questions are broadcast at most
once a second, like the room; ``question.moderate`` pin/answer is broadcast
at once. Frames have the room's shapes.

    .venv/bin/python bench/baseline.py --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime

from websockets.asyncio.server import broadcast, serve

QUESTION = {"id": 0, "text": "", "author": "", "anonymous": False, "votes": 0,
            "status": "visible", "answered": False, "answer": None, "pinned": False}  # fmt: skip
clients: set = set()
questions: dict[int, dict] = {}
changed: set[int] = set()


def encode(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def announce(question: dict) -> None:
    broadcast(clients, encode({"type": "question", "question": dict(question, voted=False)}))


async def handle(ws) -> None:
    hello = {"type": "hello", "questions": list(questions.values()), "viewers": {}}
    await ws.send(encode(hello))
    clients.add(ws)
    try:
        async for raw in ws:
            message = json.loads(raw)
            kind, ref = message.get("type"), message.get("ref")
            question = questions.get(message.get("id"))
            if kind == "question.ask":
                question = dict(QUESTION, id=len(questions) + 1, text=message["text"])
                question["created_at"] = datetime.now(UTC).isoformat()
                questions[question["id"]] = question
                announce(question)
            elif kind == "question.vote" and question:
                question["votes"] += 1 if message.get("up") else -1
                changed.add(question["id"])
            elif kind == "question.moderate" and question:
                if message.get("action") == "pin":
                    question["pinned"] = True
                else:
                    question.update(answered=True, answer=message.get("answer"))
                announce(question)
            if ref is not None or kind == "question.ask":  # the room acks every question
                await ws.send(
                    encode({"type": "ack", "ref": ref, "id": question and question["id"]})
                )
    finally:
        clients.discard(ws)


async def flush_votes() -> None:
    while True:
        await asyncio.sleep(1)
        while changed:
            announce(questions[changed.pop()])


async def main(port: int) -> None:
    options = {"compression": None, "ping_interval": None, "max_size": 16 * 1024, "backlog": 4096}
    async with serve(handle, "127.0.0.1", port, **options) as server:
        await asyncio.gather(server.serve_forever(), flush_votes())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
