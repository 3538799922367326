"""Socket.IO handlers: the seeds' ``(request, socket, context, ...)``, with Django's user and session."""

import tidings
from tidings.integrations import django as tidings_django


@tidings.on("connect")
def connect(request, socket, context):  # a def handler: it runs in a thread, so the ORM is fine
    user = tidings_django.user(request)
    if not user.is_authenticated:
        raise tidings.Refuse("log in first")
    context["username"] = user.get_username()
    socket.emit("welcome", context["username"])


@tidings.on("chat")
def chat(request, socket, context, text):
    session = tidings_django.session(request)
    session["said"] = session.get("said", 0) + 1
    session.save()  # the same session key: the site's views see it
    return {"from": context["username"], "text": text, "said": session["said"]}
