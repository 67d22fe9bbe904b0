"""A registration burst: many people filling in the public form at once.

Each visitor opens one keep-alive HTTP connection to a server (visitors
spread round-robin over the servers), GETs the event page for its CSRF
cookie and token, then POSTs ``/events/<slug>/register/`` with a name, a
unique e-mail and the session, as the browser form does, and expects the
303 to the personal page. ``concurrency`` visitors are under way at any
moment until ``total`` have finished. No Django here.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode, urlsplit

TOKEN = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


class HttpError(Exception):
    pass


async def _request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, list[tuple[str, str]], bytes]:
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise HttpError("connection closed")
    status = int(status_line.split()[1])
    received: list[tuple[str, str]] = []
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        received.append((name.strip().lower(), value.strip()))
    fields = dict(received)
    if fields.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readline()).strip() or b"0", 16):
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        content = b"".join(chunks)
    else:
        content = await reader.readexactly(int(fields.get("content-length", "0")))
    return status, received, content


async def _visit(
    url: str, slug: str, session_id: int, number: int, stamp: str
) -> tuple[float, float]:
    """One visitor: (GET seconds, POST seconds); raises on anything but a 303."""
    parts = urlsplit(url)
    host = parts.netloc
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        base = {"Host": host, "User-Agent": "tongxin-bench", "Accept-Language": "zh-CN"}
        started = time.monotonic()
        status, headers, page = await _request(reader, writer, "GET", f"/events/{slug}/", base)
        got_page = time.monotonic()
        if status != 200:
            raise HttpError(f"GET {status}")
        cookies = [v.split(";", 1)[0] for k, v in headers if k == "set-cookie"]
        token = TOKEN.search(page)
        if token is None:
            raise HttpError("no CSRF token on the event page")
        form = urlencode(
            {
                "csrfmiddlewaretoken": token[1].decode(),
                "name": f"参会者 {number}",
                "email": f"r{number}-{stamp}@bench.example.org",
                "organisation": "基准测试",
                "sessions": str(session_id),
            }
        ).encode()
        headers_out = dict(
            base,
            Origin=f"{parts.scheme}://{host}",
            Cookie="; ".join(cookies),
            **{"Content-Type": "application/x-www-form-urlencoded"},
        )
        status, _, content = await _request(
            reader, writer, "POST", f"/events/{slug}/register/", headers_out, form
        )
        if status != 303:
            raise HttpError(f"POST {status}: {content[:200]!r}")
        return got_page - started, time.monotonic() - got_page
    finally:
        writer.close()


async def burst(
    urls: list[str], *, slug: str, session_id: int, total: int, concurrency: int, timeout: float
) -> dict[str, Any]:
    """Register ``total`` people, ``concurrency`` at a time; the figures."""
    stamp = f"{time.time():.0f}"
    gets: list[float] = []
    posts: list[float] = []
    errors: Counter[str] = Counter()
    samples: list[str] = []
    numbers = iter(range(total))

    async def visitor() -> None:
        for number in numbers:
            try:
                get_s, post_s = await asyncio.wait_for(
                    _visit(urls[number % len(urls)], slug, session_id, number, stamp), timeout
                )
            except Exception as exc:
                kind = (
                    str(exc).split(":", 1)[0] if isinstance(exc, HttpError) else type(exc).__name__
                )
                errors[kind] += 1
                if len(samples) < 5:
                    samples.append(f"{kind}: {exc}"[:300])
                continue
            gets.append(get_s * 1000)
            posts.append(post_s * 1000)

    started = time.monotonic()
    await asyncio.gather(*(visitor() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    posts.sort()
    gets.sort()

    def pick(values: list[float], fraction: float) -> float | None:
        if not values:
            return None
        return round(values[min(len(values) - 1, max(0, round(fraction * len(values)) - 1))], 1)

    return {
        "processes": len(urls),
        "attempted": total,
        "concurrency": concurrency,
        "registered": len(posts),
        "seconds": round(elapsed, 2),
        "registrations_per_s": round(len(posts) / elapsed, 1) if elapsed else None,
        "post_p50_ms": pick(posts, 0.5),
        "post_p99_ms": pick(posts, 0.99),
        "get_p50_ms": pick(gets, 0.5),
        "get_p99_ms": pick(gets, 0.99),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples,
    }
