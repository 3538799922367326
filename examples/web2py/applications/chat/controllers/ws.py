# ruff: noqa: F821 - web2py runs controllers with request, HTTP ... in their globals
# The seed's controller, as written: /chat/ws/websocket.


def websocket():
    if request.websocket:
        websocket = request.websocket

        while True:
            message = websocket.receive()

            if message:
                # Handle incoming message
                process_message(message)

                # Send a response back to the client
                websocket.send("Message received: " + message)

            else:
                break
    else:
        raise HTTP(400, "Invalid WebSocket request")
