// The Node socket.io 4.8 side of the benchmark suite: the same three events as the Python apps.
// Usage: node sio_server.mjs PORT   (serves 127.0.0.1:PORT until SIGTERM)
//
//   subscribe(room)  -> socket.join(room), acked with {ok: true}
//   publish(message) -> io.to("room").emit("message", message, "room")   (encoded once by socket.io)
//   echo(payload)    -> acked with payload
//   echo_def(payload) -> the same (the Python apps' `def` handler; Node has no thread pool)
// Everything else is socket.io's default configuration (polling + websocket, no compression).
import { createServer } from "node:http";
import { Server } from "socket.io";

const ROOM = "room";
const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node sio_server.mjs PORT");
  process.exit(2);
}

const http = createServer();
const io = new Server(http, { serveClient: false });

io.on("connection", (socket) => {
  socket.on("subscribe", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("publish", (message) => {
    io.to(ROOM).emit("message", message, ROOM);
  });
  const echo = (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  };
  socket.on("echo", echo);
  socket.on("echo_def", echo);
});

http.listen(port, "127.0.0.1");

function stop() {
  io.close();
  http.close();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
