"""The site's own views; ``echo`` holds a plain WebSocket, as the web2py seed's controller did."""

from django.http import HttpResponse, HttpResponseBadRequest


def index(request):
    name = request.user.get_username() or "anonymous"
    said = request.session.get("said", 0)  # written by the Socket.IO "chat" handler
    return HttpResponse(f"hello, {name}; said {said}\n", content_type="text/plain")


def echo(request):
    websocket = request.META.get("wsgi.websocket")  # tidings puts the connection in the environ
    if websocket is None:
        return HttpResponseBadRequest("Invalid WebSocket request\n", content_type="text/plain")
    name = request.user.get_username() or "anonymous"  # the middleware ran: session and user are here
    while (message := websocket.receive()) is not None:
        websocket.send(f"{name}: {message}")
    return HttpResponse()
