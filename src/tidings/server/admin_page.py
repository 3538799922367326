"""The Socket.IO Admin UI's page, served by the server itself from the npm package's built files
(``@socket.io/admin-ui/ui/dist``), so that an operator's browser fetches nothing from elsewhere.

The page links its icons' font and Google's fonts from the internet: those links are left out, and
if the npm package ``@mdi/font`` is installed beside the UI's (the same ``node_modules``), the icons
are served from it under ``mdi/``."""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from tidings.server.responses import Send, respond

# The page's stylesheets from the internet (Google's fonts, the icons' font on a CDN): left out, the
# page falls back to the browser's fonts.
_REMOTE_STYLESHEET = re.compile(rb'<link rel="stylesheet" href="https?://[^"]*">')
_ICONS = "mdi/"
_ICONS_STYLESHEET = b'<link rel="stylesheet" href="mdi/css/materialdesignicons.min.css">'
_CACHE = b"public, max-age=3600"


class AdminPage:
    """The files of ``folder`` under the URL path ``prefix`` (``/admin-ui/``), read once each."""

    def __init__(self, folder: str | Path, prefix: str) -> None:
        self.folder = Path(folder).resolve()
        if not (self.folder / "index.html").is_file():
            raise ValueError(f"ui_files: no index.html in {self.folder} (give the package's ui/dist)")
        self.prefix = prefix
        icons = self.folder.parents[3] / "@mdi" / "font"  # node_modules/@socket.io/admin-ui/ui/dist
        self.icons: Path | None = icons if (icons / "css").is_dir() else None
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

    def _file(self, key: str) -> tuple[bytes, bytes] | None:
        cached = self._files.get(key)
        if cached is not None:
            return cached
        folder, name = self.folder, key
        if self.icons is not None and name.startswith(_ICONS):
            folder, name = self.icons, name[len(_ICONS) :]
        file = (folder / name).resolve()
        if not file.is_relative_to(folder) or not file.is_file():
            return None
        body = file.read_bytes()
        if file == self.folder / "index.html":
            body = _REMOTE_STYLESHEET.sub(b"", body)
            if self.icons is not None:
                body = body.replace(b"</head>", _ICONS_STYLESHEET + b"</head>")
        content_type = (mimetypes.guess_type(file.name)[0] or "application/octet-stream").encode()
        self._files[key] = (body, content_type)
        return self._files[key]
