"""Where a server's CPU went: a summary of py-spy's raw profiles.

``run.py --profile DIR`` runs each Daphne under ``py-spy record --gil``,
which samples only the thread holding the GIL, so every sample is Python
work. Each line of a raw profile is one call stack (frames joined by
``;``, outermost first) and the number of samples it was seen in. The
summary puts each sample in the first part of the request path its stack
passes through, and lists the functions that were themselves running
most often.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

#: (label, function, file): a sample belongs to the first label with a
#: frame in its stack of that function (any, if None; a method matches by
#: its own name) in a file whose path ends so. Order matters: the e-mail is built inside the POST's view.
PARTS = (
    ("process start-up", "load_asgi_app", "daphne/cli.py"),
    ("process start-up", "_find_and_load", "_bootstrap>"),
    ("registration e-mail (built after commit)", None, "events/emails.py"),
    ("registration POST: view", "register", "events/views.py"),
    ("event page GET: view", "event_detail", "events/views.py"),
    ("room: consumers and hub", None, "streaming/consumers.py"),
    ("room: consumers and hub", None, "streaming/hub.py"),
    ("watch time", None, "attendance/tracker.py"),
    ("other views", None, "views.py"),
    (
        "event loop: Daphne, Django's ASGI handler, async middleware",
        "Server.run",
        "daphne/server.py",
    ),
    (
        "request threads: sync middleware, hops to and from the loop",
        "_bootstrap_inner",
        "threading.py",
    ),
)
REST = "stacks py-spy read only in part (asgiref, psycopg, middleware), and the rest"
FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*):\d+\)$")


def _samples(paths: list[Path]) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    return stacks


def _part(frames: list[tuple[str, str]]) -> str:
    for label, function, suffix in PARTS:
        for name, path in frames:
            if path.endswith(suffix) and (
                function is None or name == function or name.endswith("." + function)
            ):
                return label
    return REST


def _parse(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame)
    return (match["name"], match["file"]) if match else (frame, "")


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    if match is None:
        return frame or "(unknown)"
    where = "/".join(match["file"].split("/")[-2:])
    return f"{match['name']} ({where})"


def summary(paths: list[Path], top: int = 12) -> dict:
    """Shares of the samples per part of the request path, and the busiest
    functions (where the sample was taken, start-up excluded)."""
    stacks = _samples(paths)
    total = sum(stacks.values())
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for stack, count in stacks.items():
        label = _part([_parse(frame) for frame in stack.split(";")])
        parts[label] += count
        if label != "process start-up":
            leaves[_short(stack.split(";")[-1])] += count
    counted = total - parts["process start-up"]

    def share(count: int, of: int) -> float:
        return round(100 * count / of, 1) if of else 0.0

    return {
        "files": [str(path) for path in paths],
        "samples": total,
        "parts": [
            {"part": label, "percent": share(count, counted)}
            for label, count in parts.most_common()
            if label != "process start-up"
        ],
        "start_up_percent": share(parts["process start-up"], total),
        "busiest": [
            {"function": name, "percent": share(count, counted)}
            for name, count in leaves.most_common(top)
        ],
    }


def report(paths: list[Path]) -> dict:
    result = summary(paths)
    print(f"  profile: {result['samples']:,} samples of the server processes' CPU")
    for row in result["parts"]:
        print(f"    {row['percent']:5.1f} %  {row['part']}")
    print(f"    (process start-up, not counted above: {result['start_up_percent']} %)")
    print("  busiest functions:")
    for row in result["busiest"]:
        print(f"    {row['percent']:5.1f} %  {row['function']}")
    return result


if __name__ == "__main__":
    report([Path(arg) for arg in sys.argv[1:]])
