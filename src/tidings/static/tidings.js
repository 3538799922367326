/* tidings.js: the browser client of tidings, Socket.IO v5 over Engine.IO v4, on a WebSocket or on HTTP
 * long-polling (with the upgrade from polling to WebSocket). No build step, no dependencies.
 * `<script src="/tidings/tidings.js"></script>` defines `window.tidings`; under CommonJS (Node) it is
 * `module.exports` too. tidings.mjs beside it is the same client as an ES module.
 *
 *   const socket = tidings.connect();                 // the page's origin, namespace "/"
 *   socket.on("message", (message, channel) => {});
 *   socket.subscribe("room-1").then((ack) => {});     // {ok: true} or {ok: false, error}
 *   socket.send("hello", "room-1");
 *
 * tidings.connect(url?, {path, namespace, auth, query, transports, upgrade, reconnect, reconnectDelay,
 *   reconnectDelayMax, timeout}): only url's origin is used (http -> ws, https -> wss); auth is an object
 *   or a function returning one, sent with every connect. transports (["websocket", "polling"]) are tried
 *   in this order at each connection attempt, the next at once when one fails before the handshake;
 *   with upgrade (true), a session opened on polling moves to a WebSocket when the server offers it.
 *   Methods: on/off(event, handler), emit(event, ...args, ack?), send(message, channel?, ack?),
 *   subscribe/unsubscribe(channel) -> Promise, close(). Properties: state ("connecting" | "connected" |
 *   "reconnecting" | "disconnected"), transport ("websocket" | "polling" | null when not connected), id,
 *   channels. Local events: "state" (state), "connect", "disconnect" (reason), "connect_error" (error:
 *   error.type "server" with error.data when refused, which is final; "transport" when an attempt failed),
 *   "upgrade" (transport name), "ping", and for channels with history "recovered" (channel) /
 *   "unrecovered" (channel, reason) after a reconnect: the client keeps each channel's last {offset,
 *   epoch} and subscribes again with it. Binary (ArrayBuffer, typed arrays, DataView) may be anywhere in
 *   arguments; it arrives as ArrayBuffer.
 *
 * Specs: https://socket.io/docs/v4/engine-io-protocol/ (EIO) and
 * https://socket.io/docs/v4/socket-io-protocol/ (SIO). "§" below names their sections.
 */
(function (root, factory) {
  const tidings = factory();
  if (typeof module === "object" && module.exports) module.exports = tidings;
  root.tidings = tidings; // always: tidings.mjs imports this file for its effect and reads it there
})(globalThis, function () {
  "use strict";

  // SIO §"Packet types"; an Engine.IO text packet is a type digit then data (EIO §"Packet encoding").
  const CONNECT = 0, DISCONNECT = 1, EVENT = 2, ACK = 3, CONNECT_ERROR = 4, BINARY_EVENT = 5, BINARY_ACK = 6;
  // Events this client fires itself; never sent to or taken from the server.
  const LOCAL = [
    "connect", "connect_error", "disconnect", "state", "ping", "upgrade", "recovered", "unrecovered",
  ];
  const DEFAULTS = {
    path: "/socket.io/", namespace: "/", auth: undefined, query: undefined,
    transports: ["websocket", "polling"], upgrade: true,
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

  // A transport carries Engine.IO packets: text packets as strings ("4..."), binary ones as ArrayBuffer
  // (sent as any binary value). It calls handlers.onPacket(packet) for each packet received and
  // handlers.onClose(reason) once when it goes, unless close() was called first. `available()` says
  // whether the global API it needs is there; a transport without it is skipped.

  // Over WebSocket a frame is one packet and binary data is a binary frame (EIO §"WebSocket").
  class WebSocketTransport {
    static available() {
      return typeof globalThis.WebSocket === "function";
    }

    constructor(url, handlers) {
      this.name = "websocket";
      this._waiting = []; // sent before the WebSocket was open
      this.ws = new globalThis.WebSocket(url);
      this.ws.binaryType = "arraybuffer";
      this.ws.onopen = () => this._waiting.splice(0).forEach((packet) => this.ws.send(packet));
      this.ws.onmessage = (event) => handlers.onPacket(event.data);
      this.ws.onerror = () => {}; // a close event follows
      this.ws.onclose = () => {
        this.close();
        handlers.onClose("transport close");
      };
    }

    send(packet) {
      if (this.ws.readyState === 0) this._waiting.push(packet); // CONNECTING
      else this.ws.send(packet);
    }

    close() {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
      if (this.ws.readyState < 2) this.ws.close(); // CONNECTING or OPEN
    }
  }

  // HTTP long-polling (EIO §"HTTP long-polling"): one GET at a time waits for what the server has;
  // what the client sends goes in POSTs, one at a time, each taking every packet queued meanwhile.
  // A payload joins packets with "\x1e", binary ones as "b" + base64 (EIO §"Packet encoding").
  const SEPARATOR = "\x1e";
  let requests = 0; // with the time, makes every request's URL unique: no cache may answer it

  class PollingTransport {
    static available() {
      return typeof globalThis.fetch === "function";
    }

    constructor(url, handlers) {
      this.name = "polling";
      this._url = url;
      this._handlers = handlers;
      this._sid = null; // from the open packet on, every request names the session
      this._maxPayload = Infinity; // the server's limit on a POST body, from the open packet
      this._queue = []; // packets for the next POST
      this._get = null; // the pending GET's AbortController
      this._posting = false;
      this._pausing = null; // pause()'s callback, until nothing is in flight
      this._closed = false;
      this._poll();
    }

    send(packet) {
      this._queue.push(packet);
      this._post();
    }

    // Ends the session too, with a close packet (EIO §"Protocol"), after what is still queued.
    close() {
      if (this._closed) return;
      this._closed = true;
      this._pausing = null;
      if (this._get) this._get.abort();
      if (this._sid) this.send("1");
    }

    // For the upgrade (EIO §"Upgrade"): no new request; once none is in flight, the transport is
    // done and onPaused(queued) gets the packets that were never sent, for the WebSocket.
    pause(onPaused) {
      this._pausing = onPaused;
      this._handOver();
    }

    // The upgrade failed before the hand-over: carry on polling.
    resume() {
      this._pausing = null;
      this._poll();
      this._post();
    }

    _handOver() {
      if (!this._pausing || this._get || this._posting) return;
      const onPaused = this._pausing;
      this._closed = true;
      this._pausing = null;
      onPaused(this._queue.splice(0));
    }

    _poll() {
      if (this._closed || this._get || this._pausing) return;
      const get = (this._get = new AbortController());
      this._request("GET", undefined, get.signal)
        .then((payload) => {
          this._get = null;
          for (const part of payload.split(SEPARATOR)) {
            if (this._closed) return; // a packet closed it (or the socket, from a handler)
            this._receive(part[0] === "b" ? fromBase64(part.slice(1)) : part);
          }
          this._poll();
          this._handOver();
        })
        .catch(() => this._fail());
    }

    _receive(packet) {
      if (packet[0] === "0" && !this._sid) {
        const handshake = JSON.parse(packet.slice(1)); // a bad one fails the transport
        this._sid = handshake.sid;
        this._maxPayload = handshake.maxPayload || Infinity;
      }
      if (packet === "1") this._sid = null; // the server closed the session: no close packet back
      this._handlers.onPacket(packet);
    }

    _post() {
      if (this._posting || !this._sid || !this._queue.length || this._pausing) return;
      // As many queued packets as fit in the server's maxPayload (at least one).
      const parts = [];
      let size = -1;
      for (const packet of this._queue) {
        const part = typeof packet === "string" ? packet : "b" + toBase64(packet);
        size += 1 + utf8Length(part);
        if (parts.length && size > this._maxPayload) break;
        parts.push(part);
      }
      this._queue.splice(0, parts.length);
      this._posting = true;
      this._request("POST", parts.join(SEPARATOR))
        .then(() => {
          this._posting = false;
          this._post();
          this._handOver();
        })
        .catch(() => this._fail());
    }

    _request(method, body, signal) {
      const sid = this._sid ? `&sid=${encodeURIComponent(this._sid)}` : "";
      const url = `${this._url}${sid}&t=${Date.now().toString(36)}.${(requests++).toString(36)}`;
      return globalThis.fetch(url, { method, body, signal }).then((response) => {
        if (response.status !== 200) throw new Error(`HTTP ${response.status}`);
        return response.text();
      });
    }

    // A non-200 answer or a network error (EIO §"HTTP long-polling": the session is gone or unusable).
    _fail() {
      if (this._closed) return; // closed by us: the aborted GET and late answers do not count
      this._closed = true;
      this._pausing = null;
      this._queue = [];
      if (this._get) this._get.abort();
      this._handlers.onClose("transport error");
    }
  }

  function toBase64(data) {
    const bytes = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  function fromBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  // The size the server counts against maxPayload. Each half of a surrogate pair counts 3: an
  // overestimate by 2 bytes, which only keeps a POST further under the limit.
  function utf8Length(text) {
    let length = text.length;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      length += code >= 0x800 ? 2 : code >= 0x80 ? 1 : 0;
    }
    return length;
  }

  const TRANSPORTS = { websocket: WebSocketTransport, polling: PollingTransport };

  // Bad options fail connect() at once: every name known, and one transport at least usable here.
  function checkTransports(transports) {
    const known = Object.keys(TRANSPORTS);
    const listed = Array.isArray(transports) ? transports : [];
    if (!listed.length || !listed.every((name) => known.includes(name))) {
      const given = JSON.stringify(transports);
      throw new Error(`tidings.connect: transports must list "websocket", "polling" or both, not ${given}`);
    }
    if (!transports.some((name) => TRANSPORTS[name].available())) {
      throw new Error(`tidings.connect: no transport of ${transports} can run here (no WebSocket, no fetch)`);
    }
  }

  // -- The socket ---------------------------------------------------------------------------------

  class Socket {
    constructor(url, options) {
      this.options = Object.assign({}, DEFAULTS, options);
      const base = typeof location !== "undefined" ? location.href : undefined;
      if (!url && !base) throw new Error("tidings.connect: no url, and no page to take it from");
      this._origin = new URL(url || base, base).origin; // url's origin only; options.path is the path
      checkTransports(this.options.transports);
      this.state = "connecting"; // | "connected" | "reconnecting" | "disconnected"
      this.id = null; // the Socket.IO sid while connected
      this._listeners = new Map(); // event -> handlers
      this._channels = new Map(); // channel -> subscribe() promises waiting for the server's ack
      this._positions = new Map(); // channel with history -> {offset, epoch} of the last message had
      this._acks = new Map(); // ack id -> {fn, sent, lost}
      this._nextAck = 0;
      this._buffer = []; // emits made while not connected: sent once connected
      this._attempts = 0;
      this._transport = null; // the one carrying the session, or trying to open one
      this._untried = []; // the transports this connection attempt may still try
      this._handshake = null; // the open packet's data, once it came
      this._probe = null; // a WebSocket probing for the upgrade
      this._closed = false;
      this._open();
    }

    get channels() {
      return [...this._channels.keys()];
    }

    // "websocket" or "polling" while connected, else null.
    get transport() {
      return this.state === "connected" && this._transport ? this._transport.name : null;
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

    // A connection attempt tries the transports in order: one that fails before the open packet
    // (EIO §"Handshake") makes way for the next at once.
    _open() {
      this._untried = this.options.transports.filter((name) => TRANSPORTS[name].available());
      if (!this._untried.length) {
        // Its API went away since connect() (a page removed window.WebSocket): nothing can connect.
        const error = new Error("no transport available");
        error.type = "transport";
        this._finish();
        return this._fire("connect_error", error);
      }
      this._openNext();
    }

    _openNext() {
      const name = this._untried.shift();
      this._transport = new TRANSPORTS[name](this._url(name), {
        onPacket: (packet) => this._onEnginePacket(packet),
        onClose: (reason) => this._drop(reason),
      });
      this._expectWithin(this.options.timeout, "timeout"); // until the handshake says better
    }

    _url(transport, sid) {
      const query = new URLSearchParams(this.options.query || {});
      query.set("EIO", "4");
      query.set("transport", transport);
      if (sid) query.set("sid", sid);
      const origin = transport === "websocket" ? this._origin.replace(/^http/, "ws") : this._origin;
      return `${origin}${this.options.path}?${query}`;
    }

    _onEnginePacket(packet) {
      try {
        if (typeof packet !== "string") return this._onAttachment(packet);
        switch (packet[0]) {
          case "0": { // open: the handshake, {sid, upgrades, pingInterval, pingTimeout, maxPayload}
            this._handshake = JSON.parse(packet.slice(1));
            this._heartbeat();
            const auth = this.options.auth; // then connect the namespace (SIO §"Connection to a namespace")
            this._send(CONNECT, typeof auth === "function" ? auth() : auth);
            if (this._transport.name === "polling" && this._mayUpgrade()) this._upgrade();
            return;
          }
          case "1": // close
            return this._drop("transport close");
          case "2": // ping: the server drives the heartbeat; answer with a pong (EIO §"Heartbeat")
            this._transport.send("3");
            this._heartbeat();
            return this._fire("ping");
          case "4": // message: a Socket.IO packet
            return this._onSocketPacket(decode(packet.slice(1)));
          // "6" noop: answers a GET so that polling can pause for the upgrade. The server sends no
          // "5" upgrade, and "3" pong only as "3probe", which only the probe sees.
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

    _mayUpgrade() {
      const offered = this._handshake.upgrades || [];
      return this.options.upgrade && this.options.transports.includes("websocket") &&
        offered.includes("websocket") && WebSocketTransport.available();
    }

    // EIO §"Upgrade": a WebSocket on the same session sends "2probe" and must get "3probe"; then
    // polling pauses (the server answers the pending GET with a noop), "5" makes the WebSocket the
    // transport, and what was queued meanwhile follows on it, in order. A failed probe changes
    // nothing: the session stays on polling.
    _upgrade() {
      const polling = this._transport;
      let probing = true;
      const giveUp = () => {
        this._stopProbe();
        polling.resume();
      };
      const probe = (this._probe = new WebSocketTransport(this._url("websocket", this._handshake.sid), {
        onPacket: (packet) => {
          if (!probing) return this._onEnginePacket(packet);
          if (packet !== "3probe") return giveUp();
          clearTimeout(this._probeTimer);
          polling.pause((queued) => {
            probing = false;
            this._probe = null;
            this._transport = probe;
            probe.send("5");
            queued.forEach((packet) => probe.send(packet));
            this._fire("upgrade", probe.name);
          });
        },
        onClose: (reason) => (probing ? giveUp() : this._drop(reason)),
      }));
      this._probeTimer = setTimeout(giveUp, this.options.timeout);
      probe.send("2probe");
    }

    _stopProbe() {
      clearTimeout(this._probeTimer);
      if (this._probe) this._probe.close();
      this._probe = null;
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
      this._stopProbe();
      if (this._transport) this._transport.close();
      this._transport = this._binary = this.id = this._handshake = null;
      for (const [id, ack] of this._acks) {
        if (!ack.sent) continue; // emitted while disconnected: still buffered
        this._acks.delete(id); // sent on the lost session: no ack will ever come
        if (ack.lost) ack.lost();
      }
    }

    // The connection failed or went: the next transport, if this one never opened; else reconnect,
    // with exponential backoff and jitter.
    _drop(reason) {
      if (this._closed || !this._transport) return;
      const opened = this._handshake !== null;
      const wasConnected = this.state === "connected";
      this._teardown();
      if (!opened && this._untried.length) return this._openNext();
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
