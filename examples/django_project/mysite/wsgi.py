"""The WSGI app, served with its Socket.IO handlers: `tidings run mysite.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()

# The seeds' rule: handlers may live anywhere, as long as they are imported at startup.
from mysite import events  # noqa: E402, F401
