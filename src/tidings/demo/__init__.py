"""`tidings demo`: the seeds' chat rooms, a web.py app on tidings (docs/demo.md).

- :mod:`tidings.demo.chat`: the rules (room names, nicknames, message size) and the tidings handlers,
  in the seeds' style: ``on_connect``, ``on_subscribe``, ``on_message``, ``on_unsubscribe``.
- :mod:`tidings.demo.claims`: a nickname is checked and taken in a room in one step, in one process
  or across demos sharing Redis.
- :mod:`tidings.demo.app`: the web.py pages (``templates/``, ``static/``) and the server,
  ``tidings.demo.app:server``, which ``tidings demo`` runs.
"""

#: What ``tidings demo`` serves, as ``tidings run`` would take it.
TARGET = "tidings.demo.app:server"
