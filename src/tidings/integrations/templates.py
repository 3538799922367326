"""Template helpers: the ``<script>`` tag that loads the browser client, safe in any template engine.

>>> from tidings import script_tag
>>> script_tag()
'<script src="/tidings/tidings.js"></script>'
"""

from __future__ import annotations

import html

__all__ = ["HTML", "script_tag"]


class HTML(str):
    """Markup that is already safe: template engines insert it as it is instead of escaping it.

    ``__html__`` is the protocol of markupsafe (Jinja2, Flask) and of Django's ``conditional_escape``;
    ``xml`` the one of web2py's helpers and views. A plain ``str`` passed to them is escaped.
    """

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)

    def xml(self) -> str:
        return str(self)


def script_tag(src: str = "/tidings/tidings.js") -> HTML:
    """``<script src="..."></script>`` for the browser client that ``tidings.Server`` serves.

    ``src`` is escaped for the attribute; give another one if the server's ``client_path`` differs
    or the app is mounted under a prefix.
    """
    return HTML(f'<script src="{html.escape(src, quote=True)}"></script>')
