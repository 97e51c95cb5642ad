"""The dashboard. For now one page that tells a visitor where the API is."""

from __future__ import annotations

from litestar import MediaType, get

_INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Postroom</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>Postroom</h1>
<p>Postroom is running. The Lettr API is served under <code>/api</code>; check it with
<code>curl http://HOST:PORT/api/health</code>.</p>
<p>Create an API key with <code>postroom keys create --name "My app"</code>, then point a Lettr SDK at
<code>http://HOST:PORT/api</code>.</p>
<p>Sign-in for team members is not available yet.</p></body></html>
"""


@get("/", media_type=MediaType.HTML, sync_to_thread=False, include_in_schema=False)
def index() -> str:
    return _INDEX
