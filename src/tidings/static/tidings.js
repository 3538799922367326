/* tidings.js: the browser client of tidings, Socket.IO v5 over Engine.IO v4 on a WebSocket.
 * No build step, no dependencies. `<script src="/tidings/tidings.js"></script>` defines
 * `window.tidings`; under CommonJS (Node) it is `module.exports`.
 *
 *   const socket = tidings.connect();                 // the page's origin, namespace "/"
 *   socket.on("message", (message, channel) => {});
 *   socket.subscribe("room-1").then((ack) => {});     // {ok: true} or {ok: false, error}
 *   socket.send("hello", "room-1");
 *
 * tidings.connect(url?, {path, namespace, auth, query, reconnect, reconnectDelay, reconnectDelayMax,
 *   timeout}): only url's origin is used (http -> ws, https -> wss); auth is an object or a function
 *   returning one, sent with every connect. Methods: on/off(event, handler), emit(event, ...args, ack?),
 *   send(message, channel?, ack?), subscribe/unsubscribe(channel) -> Promise, close(). Properties: state
 *   ("connecting" | "connected" | "reconnecting" | "disconnected"), id, channels. Local events: "state"
 *   (state), "connect", "disconnect" (reason), "connect_error" (error: error.type "server" with
 *   error.data when refused, which is final; "transport" when an attempt failed), "ping", and for
 *   channels with history "recovered" (channel) / "unrecovered" (channel, reason) after a reconnect:
 *   the client keeps each channel's last {offset, epoch} and subscribes again with it. Binary
 *   (ArrayBuffer, typed arrays, DataView) may be anywhere in arguments; it arrives as ArrayBuffer.
 *
 * Specs: https://socket.io/docs/v4/engine-io-protocol/ (EIO) and
 * https://socket.io/docs/v4/socket-io-protocol/ (SIO). "§" below names their sections.
 */
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.tidings = factory();
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // SIO §"Packet types"; an Engine.IO text packet is a type digit then data (EIO §"Packet encoding").
  const CONNECT = 0, DISCONNECT = 1, EVENT = 2, ACK = 3, CONNECT_ERROR = 4, BINARY_EVENT = 5, BINARY_ACK = 6;
  // Events this client fires itself; never sent to or taken from the server.
  const LOCAL = ["connect", "connect_error", "disconnect", "state", "ping", "recovered", "unrecovered"];
  const DEFAULTS = {
    path: "/socket.io/", namespace: "/", auth: undefined, query: undefined,
    reconnect: true, reconnectDelay: 500, reconnectDelayMax: 5000, timeout: 20000,
  };

  // A handler's exception is reported like any uncaught error, without breaking the protocol state.
  function call(fn, self, args) {
    try {
      fn.apply(self, args);
    } catch (error) {
      setTimeout(() => {
        throw error;
      });
    }
  }

  // -- Socket.IO packets (SIO §"Packet encoding") -------------------------------------------------

  const isBinary = (value) => value instanceof ArrayBuffer || ArrayBuffer.isView(value);

  // Binary values (ArrayBuffer, typed arrays, DataView, Node's Buffer) leave the arguments as
  // attachments, replaced by {"_placeholder": true, "num": n}; they follow the packet as binary messages.
  function deconstruct(value, attachments) {
    if (isBinary(value)) return { _placeholder: true, num: attachments.push(value) - 1 };
    if (Array.isArray(value)) return value.map((item) => deconstruct(item, attachments));
    if (value && typeof value === "object" && typeof value.toJSON !== "function") {
      const copy = {};
      for (const key of Object.keys(value)) copy[key] = deconstruct(value[key], attachments);
      return copy;
    }
    return value;
  }

  function reconstruct(value, attachments) {
    if (Array.isArray(value)) return value.map((item) => reconstruct(item, attachments));
    if (value && typeof value === "object") {
      if (value._placeholder === true && typeof value.num === "number") {
        if (!(value.num in attachments)) throw new Error("bad attachment placeholder");
        return attachments[value.num];
      }
      for (const key of Object.keys(value)) value[key] = reconstruct(value[key], attachments);
    }
    return value;
  }

  // <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>] and then the attachments.
  function encode(type, namespace, data, id) {
    const attachments = [];
    if (type === EVENT || type === ACK) {
      data = deconstruct(data, attachments);
      if (attachments.length) type = type === EVENT ? BINARY_EVENT : BINARY_ACK;
    }
    let text = String(type);
    if (attachments.length) text += attachments.length + "-";
    if (namespace !== "/") text += namespace + ",";
    if (id !== undefined && id !== null) text += id;
    if (data !== undefined) text += JSON.stringify(data);
    return [text, ...attachments];
  }

  function decode(text) {
    const packet = { type: Number(text[0]), namespace: "/", id: null, data: undefined, attachments: 0 };
    let i = 1;
    if (packet.type === BINARY_EVENT || packet.type === BINARY_ACK) {
      const dash = text.indexOf("-", i);
      packet.attachments = Number(text.slice(i, dash));
      i = dash + 1;
    }
    if (text[i] === "/") {
      const comma = text.indexOf(",", i);
      const end = comma === -1 ? text.length : comma;
      packet.namespace = text.slice(i, end);
      i = end + 1;
    }
    const digits = /^\d*/.exec(text.slice(i))[0];
    if (digits) packet.id = Number(digits);
    i += digits.length;
    if (i < text.length) packet.data = JSON.parse(text.slice(i));
    if (!(packet.type >= CONNECT && packet.type <= BINARY_ACK) || !(packet.attachments >= 0)) {
      throw new Error("bad packet");
    }
    return packet;
  }

  // -- Transports ---------------------------------------------------------------------------------

  // A transport carries Engine.IO packets: text packets as strings ("4..."), binary ones as ArrayBuffer.
  // It calls handlers.onPacket(packet) for each packet received and handlers.onClose(reason) once when
  // it goes, unless close() was called first. Over WebSocket a frame is one packet and binary data is a
  // binary frame (EIO §"WebSocket"). A polling transport would do the same over HTTP, framing payloads
  // with "\x1e" and binary as "b" + base64 (EIO §"HTTP long-polling").
  class WebSocketTransport {
    constructor(url, handlers) {
      this.ws = new globalThis.WebSocket(url);
      this.ws.binaryType = "arraybuffer";
      this.ws.onmessage = (event) => handlers.onPacket(event.data);
      this.ws.onerror = () => {}; // a close event follows
      this.ws.onclose = () => {
        this.close();
        handlers.onClose("transport close");
      };
    }

    send(packet) {
      this.ws.send(packet);
    }

    close() {
      this.ws.onmessage = this.ws.onclose = null;
      if (this.ws.readyState < 2) this.ws.close(); // CONNECTING or OPEN
    }
  }

  const TRANSPORTS = { websocket: WebSocketTransport };

  // -- The socket ---------------------------------------------------------------------------------

  class Socket {
    constructor(url, options) {
      this.options = Object.assign({}, DEFAULTS, options);
      const base = typeof location !== "undefined" ? location.href : undefined;
      if (!url && !base) throw new Error("tidings.connect: no url, and no page to take it from");
      this._origin = new URL(url || base, base).origin; // url's origin only; options.path is the path
      this.state = "connecting"; // | "connected" | "reconnecting" | "disconnected"
      this.id = null; // the Socket.IO sid while connected
      this._listeners = new Map(); // event -> handlers
      this._channels = new Map(); // channel -> subscribe() promises waiting for the server's ack
      this._positions = new Map(); // channel with history -> {offset, epoch} of the last message had
      this._acks = new Map(); // ack id -> {fn, sent, lost}
      this._nextAck = 0;
      this._buffer = []; // emits made while not connected: sent once connected
      this._attempts = 0;
      this._closed = false;
      this._open();
    }

    get channels() {
      return [...this._channels.keys()];
    }

    on(event, handler) {
      if (!this._listeners.has(event)) this._listeners.set(event, []);
      this._listeners.get(event).push(handler);
      return this;
    }

    off(event, handler) {
      const handlers = this._listeners.get(event) || [];
      this._listeners.set(event, handler ? handlers.filter((h) => h !== handler) : []);
      return this;
    }

    // emit(event, ...args[, ack]): a trailing function is called with the server's ack arguments.
    emit(event, ...args) {
      if (LOCAL.includes(event)) throw new Error(`"${event}" is a reserved event name`);
      const id = typeof args[args.length - 1] === "function" ? this._ack(args.pop()) : null;
      if (this.state === "connected") this._send(EVENT, [event, ...args], id);
      else if (!this._closed) this._buffer.push([[event, ...args], id]);
      return this;
    }

    send(message, channel, ack) {
      if (typeof channel === "function") [channel, ack] = [undefined, channel];
      const args = channel === undefined || channel === null ? [message] : [message, channel];
      return ack ? this.emit("message", ...args, ack) : this.emit("message", ...args);
    }

    // Resolves to the server's ack; the channel is remembered (and subscribed again after every
    // reconnect) unless the server refuses it. Rejects if the socket closes for good before the ack.
    subscribe(channel) {
      return new Promise((resolve, reject) => {
        if (this._closed) return reject(new Error("socket closed"));
        if (!this._channels.has(channel)) this._channels.set(channel, []);
        this._channels.get(channel).push({ resolve, reject });
        if (this.state === "connected") this._subscribe(channel);
      });
    }

    unsubscribe(channel) {
      const waiting = this._channels.get(channel) || [];
      this._channels.delete(channel);
      this._positions.delete(channel);
      waiting.forEach((w) => w.reject(new Error("unsubscribed before the server subscribed it")));
      if (this.state !== "connected") return Promise.resolve({ ok: true }); // no session, no subscription
      return new Promise((resolve) => this._send(EVENT, ["unsubscribe", channel], this._ack(resolve)));
    }

    close() {
      if (this._closed) return this;
      const connected = this.state === "connected";
      if (connected) this._send(DISCONNECT); // SIO §"Disconnection from a namespace"
      this._finish();
      if (connected) this._fire("disconnect", "io client disconnect");
      return this;
    }

    // -- Engine.IO (EIO §"Protocol") --

    _open(transport = "websocket") {
      const query = new URLSearchParams(this.options.query || {});
      query.set("EIO", "4");
      query.set("transport", transport);
      const origin = transport === "websocket" ? this._origin.replace(/^http/, "ws") : this._origin;
      this._transport = new TRANSPORTS[transport](`${origin}${this.options.path}?${query}`, {
        onPacket: (packet) => this._onEnginePacket(packet),
        onClose: (reason) => this._drop(reason),
      });
      this._expectWithin(this.options.timeout, "timeout"); // until the handshake says better
    }

    _onEnginePacket(packet) {
      try {
        if (typeof packet !== "string") return this._onAttachment(packet);
        switch (packet[0]) {
          case "0": { // open: the handshake, {sid, upgrades, pingInterval, pingTimeout, maxPayload}
            this._handshake = JSON.parse(packet.slice(1));
            this._heartbeat();
            const auth = this.options.auth; // then connect the namespace (SIO §"Connection to a namespace")
            return this._send(CONNECT, typeof auth === "function" ? auth() : auth);
          }
          case "1": // close
            return this._drop("transport close");
          case "2": // ping: the server drives the heartbeat; answer with a pong (EIO §"Heartbeat")
            this._transport.send("3");
            this._heartbeat();
            return this._fire("ping");
          case "4": // message: a Socket.IO packet
            return this._onSocketPacket(decode(packet.slice(1)));
          // "3" pong, "5" upgrade, "6" noop: not sent to a WebSocket-only client
        }
      } catch (error) {
        this._drop("parse error");
      }
    }

    // The next ping is due within pingInterval; pingTimeout on top of it is the server's grace. With
    // no ping by then the connection is dead even if the transport has not noticed (EIO §"Heartbeat").
    _heartbeat() {
      this._expectWithin(this._handshake.pingInterval + this._handshake.pingTimeout, "ping timeout");
    }

    _expectWithin(ms, reason) {
      clearTimeout(this._deadline);
      this._deadline = setTimeout(() => this._drop(reason), ms);
    }

    // -- Socket.IO (SIO §"Exchange protocol") --

    _send(type, data, id) {
      if (type === EVENT && this._acks.has(id)) this._acks.get(id).sent = true;
      const [text, ...attachments] = encode(type, this.options.namespace, data, id);
      this._transport.send("4" + text);
      attachments.forEach((attachment) => this._transport.send(attachment));
    }

    _ack(fn, lost) {
      this._acks.set(this._nextAck, { fn, lost, sent: false });
      return this._nextAck++;
    }

    _onSocketPacket(packet) {
      if (this._binary) throw new Error("a packet came before the attachments of the last one");
      if (!packet.attachments) return this._dispatch(packet);
      this._binary = packet;
      packet.buffers = [];
    }

    _onAttachment(buffer) {
      const packet = this._binary;
      if (!packet) throw new Error("an attachment without a binary packet");
      packet.buffers.push(buffer);
      if (packet.buffers.length < packet.attachments) return;
      this._binary = null;
      packet.data = reconstruct(packet.data, packet.buffers);
      this._dispatch(packet);
    }

    _dispatch({ type, namespace, id, data }) {
      if (namespace !== this.options.namespace) return;
      if (type === CONNECT) return this._connected(data.sid);
      if (type === CONNECT_ERROR) {
        // Refused (SIO §"Connection to a namespace"): data is {message, data?}. No retry.
        const error = new Error(data && data.message !== undefined ? data.message : String(data));
        error.type = "server";
        error.data = data && data.data;
        this._finish();
        return this._fire("connect_error", error);
      }
      if (type === DISCONNECT) {
        this._finish();
        return this._fire("disconnect", "io server disconnect");
      }
      if (!Array.isArray(data)) throw new Error("event or ack data is not an array");
      if (type === ACK || type === BINARY_ACK) {
        const ack = this._acks.get(id);
        this._acks.delete(id);
        if (ack) call(ack.fn, this, data);
        return;
      }
      const [event, ...args] = data;
      if (LOCAL.includes(event)) return;
      // A message of a channel with history: (message, channel, {offset, epoch}).
      if (event === "message" && args.length >= 3 && this._channels.has(args[1])) this._advance(args[1], args[2]);
      if (id !== null) {
        let done = false; // the server asked for an ack: the handler gets a function as last argument
        args.push((...reply) => {
          if (!done && this.state === "connected") this._send(ACK, reply, id);
          done = true;
        });
      }
      this._fire(event, ...args);
    }

    _connected(sid) {
      if (this.state === "connected") return;
      this.id = sid;
      this._attempts = 0;
      this.state = "connected";
      // The new session has no subscriptions: make them again before anything else goes out.
      for (const channel of this._channels.keys()) this._subscribe(channel);
      const buffered = this._buffer;
      this._buffer = [];
      buffered.forEach(([data, id]) => this._send(EVENT, data, id));
      this._fire("state", "connected");
      this._fire("connect");
    }

    // Keep the newest position of a channel: a later offset, or another epoch (a new history).
    _advance(channel, position) {
      if (!position || typeof position.offset !== "number" || typeof position.epoch !== "string") return;
      const last = this._positions.get(channel);
      if (!last || last.epoch !== position.epoch || position.offset > last.offset) {
        this._positions.set(channel, { offset: position.offset, epoch: position.epoch });
      }
    }

    // Subscribe on the current session; with a position from an earlier one, recover what followed it
    // (the server sends the missed messages before its ack, in order).
    _subscribe(channel) {
      const waiting = this._channels.get(channel);
      this._channels.set(channel, []);
      const since = this._positions.get(channel);
      const settle = (ack) => {
        if ((!ack || ack.ok !== true) && this._channels.get(channel)) this._channels.delete(channel);
        if (ack && ack.ok === true && this._channels.has(channel)) {
          if (ack.recovered === false) this._positions.delete(channel); // start again from the ack's position
          this._advance(channel, ack);
          if (since && ack.recovered === true) this._fire("recovered", channel);
          if (since && ack.recovered === false) this._fire("unrecovered", channel, ack.reason);
        }
        waiting.forEach((w) => w.resolve(ack));
      };
      const lost = () => {
        // The connection went before the ack: wait for the next connect, if the channel is still wanted.
        if (this._channels.has(channel)) this._channels.get(channel).push(...waiting);
        else waiting.forEach((w) => w.reject(new Error("socket closed")));
      };
      const args = since ? ["subscribe", channel, { since }] : ["subscribe", channel];
      this._send(EVENT, args, this._ack(settle, lost));
    }

    // -- Losing the connection --

    _teardown() {
      clearTimeout(this._deadline);
      if (this._transport) this._transport.close();
      this._transport = this._binary = this.id = null;
      for (const [id, ack] of this._acks) {
        if (!ack.sent) continue; // emitted while disconnected: still buffered
        this._acks.delete(id); // sent on the lost session: no ack will ever come
        if (ack.lost) ack.lost();
      }
    }

    // The connection failed or went: reconnect, with exponential backoff and jitter.
    _drop(reason) {
      if (this._closed || !this._transport) return;
      const wasConnected = this.state === "connected";
      this._teardown();
      if (!this.options.reconnect) {
        this._finish();
      } else {
        const { reconnectDelay, reconnectDelayMax } = this.options;
        const ceiling = Math.min(reconnectDelayMax, reconnectDelay * 2 ** this._attempts++);
        // "Equal jitter": half the delay is random, so clients that lost the same server spread out.
        this._retry = setTimeout(() => this._open(), ceiling / 2 + (Math.random() * ceiling) / 2);
        this._setState("reconnecting");
      }
      if (wasConnected) return this._fire("disconnect", reason);
      const error = new Error(reason);
      error.type = "transport";
      this._fire("connect_error", error);
    }

    // For good: closed by either side, or refused.
    _finish() {
      this._closed = true;
      clearTimeout(this._retry);
      this._teardown();
      this._buffer = [];
      this._acks.clear();
      for (const waiting of this._channels.values()) {
        waiting.forEach((w) => w.reject(new Error("socket closed")));
      }
      this._channels.clear();
      this._setState("disconnected");
    }

    _setState(state) {
      if (state === this.state) return;
      this.state = state;
      this._fire("state", state);
    }

    _fire(event, ...args) {
      for (const handler of (this._listeners.get(event) || []).slice()) call(handler, this, args);
    }
  }

  // connect(url?, options?): url defaults to the page's origin.
  function connect(url, options) {
    if (url && typeof url === "object") [url, options] = [undefined, url];
    return new Socket(url, options);
  }

  return { connect, Socket, protocol: { encode, decode } };
});
