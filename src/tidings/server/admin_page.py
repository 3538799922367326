"""The Socket.IO Admin UI's page, served by the server itself from the npm package's built files
(``@socket.io/admin-ui/ui/dist``), so that an operator's browser fetches nothing from elsewhere."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from tidings.server.responses import Send, respond

# The page's stylesheets from the internet (Google's fonts, the icons' font on a CDN): left out, the
# page falls back to the browser's fonts.
_REMOTE_STYLESHEET = re.compile(rb'<link rel="stylesheet" href="https?://[^"]*">')
_CACHE = b"public, max-age=3600"


class AdminPage:
    """The files of ``folder`` under the URL path ``prefix`` (``/admin-ui/``), read once each."""

    def __init__(self, folder: str | Path, prefix: str) -> None:
        self.folder = Path(folder).resolve()
        if not (self.folder / "index.html").is_file():
            raise ValueError(f"ui_files: no index.html in {self.folder} (give the package's ui/dist)")
        self.prefix = prefix
        self._files: dict[str, tuple[bytes, bytes]] = {}

    def serves(self, path: str) -> bool:
        return path.startswith(self.prefix) or path == self.prefix[:-1]

    async def serve(self, path: str, send: Send) -> None:
        if path == self.prefix[:-1]:  # the page's links are relative to the folder
            await respond(send, 308, b"", headers=[(b"location", self.prefix.encode())])
            return
        found = self._file(path[len(self.prefix) :] or "index.html")
        if found is None:
            await respond(send, 404, b"Not Found")
            return
        body, content_type = found
        await respond(send, 200, body, content_type, cache_control=_CACHE)

    def _file(self, name: str) -> tuple[bytes, bytes] | None:
        cached = self._files.get(name)
        if cached is not None:
            return cached
        file = (self.folder / name).resolve()
        if not file.is_relative_to(self.folder) or not file.is_file():
            return None
        body = file.read_bytes()
        if name == "index.html":
            body = _REMOTE_STYLESHEET.sub(b"", body)
        content_type = (mimetypes.guess_type(file.name)[0] or "application/octet-stream").encode()
        self._files[name] = (body, content_type)
        return self._files[name]
