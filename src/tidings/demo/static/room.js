/* A room of `tidings demo`: asks a nickname, joins the room's channel with tidings.js and shows its
 * messages, its notices and who is here. Each tab has its own nickname (sessionStorage: a reload keeps
 * it); the last one chosen in any tab (localStorage) only fills in the field of a new tab, which joins
 * once its person says OK. ?name=... joins at once. The server refuses a nickname somebody in the room
 * goes by, with a sentence this page shows.
 * User text only ever goes into the page as textContent. The server's side: tidings/demo/chat.py.
 */
"use strict";
(function () {
  const NICK_KEY = "tidings-demo-nick";
  const MAX_SHOWN = 500; // messages and notices kept on the page
  const $ = (id) => document.getElementById(id);
  const room = $("room").dataset.room;
  const channel = "room-" + room;
  const members = new Map(); // session id -> nickname
  let socket = null;
  let nick = "";
  let chosen = false; // nick was typed or given as ?name=, not read from this tab's storage

  // storage: "sessionStorage" (this tab's nickname) or "localStorage" (the last one chosen).
  function storedNick(storage) {
    try {
      return window[storage].getItem(NICK_KEY) || "";
    } catch (error) {
      return ""; // storage disabled: ask every time
    }
  }

  function keepNick(storage, name) {
    try {
      window[storage].setItem(NICK_KEY, name);
    } catch (error) {
      // kept for this page only
    }
  }

  // The room took `name`: this tab's nickname from now on, and, if it was just chosen (not this tab's
  // own, coming back), the one to suggest to new tabs.
  function tookNick(name, suggest) {
    keepNick("sessionStorage", name);
    if (suggest) keepNick("localStorage", name);
  }

  function setNick(name) {
    nick = name;
    $("me").textContent = name;
  }

  function askNick(error) {
    $("nick").value = nick || storedNick("localStorage");
    $("nick-error").textContent = error || "";
    $("nick-form").hidden = false;
    $("nick").focus();
  }

  function showError(error) {
    $("error").textContent = error || "";
  }

  function showState() {
    const state = socket ? socket.state : "disconnected";
    $("state").textContent = state;
    $("state").dataset.state = state; // the dot's colour
    showTransport();
  }

  // socket.transport: "websocket" or "polling"; an "upgrade" changes it.
  function showTransport() {
    const transport = socket && socket.state === "connected" ? socket.transport : undefined;
    $("transport").textContent = typeof transport === "string" ? transport : "";
  }

  function append(item) {
    const list = $("messages");
    list.append(item);
    while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
  }

  function line(className, ...parts) {
    const item = document.createElement("li");
    item.className = className;
    for (const [partClass, text] of parts) {
      const part = document.createElement("span");
      part.className = partClass;
      part.textContent = text;
      item.append(part, " ");
    }
    return item;
  }

  function notice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    append(item);
  }

  const NOTICES = {
    join: (m) => `${m.name} joined`,
    leave: (m) => `${m.name} left`,
    rename: (m) => `${m.old} is now ${m.name}`,
  };

  function received(message, from) {
    if (from !== undefined && from !== channel) return;
    if (!message || typeof message !== "object") return;
    if (message.action === "message") {
      append(line("message", ["nick", message.name], ["text", message.text]));
    } else if (NOTICES[message.action]) {
      notice(NOTICES[message.action](message));
    }
  }

  function showMembers() {
    const list = $("members");
    const names = [...members.entries()].sort((a, b) => a[1].localeCompare(b[1]));
    list.replaceChildren(
      ...names.map(([id, name]) => {
        const item = document.createElement("li");
        item.textContent = name;
        if (socket && id === socket.id) item.className = "me";
        return item;
      })
    );
  }

  function present(answer) {
    if (!answer || answer.ok !== true) return;
    members.clear();
    for (const member of answer.presence) members.set(member.session_id, member.info.name);
    showMembers();
  }

  // Who came and went since the last notice. A notice of too many changes to name (more than the
  // server's presence_max_diff in one window) has the count alone: the list is asked for again,
  // fine for the demo's rooms; a page for rooms of thousands would show the count instead.
  function presenceChanged(from, notice) {
    if (from !== channel) return; // the directory's notices: other rooms
    if (!notice.joined) return socket.emit("presence", channel, present);
    for (const member of notice.left) members.delete(member.session_id);
    for (const member of notice.joined) members.set(member.session_id, member.info.name);
    showMembers();
  }

  function start() {
    $("nick-form").hidden = true;
    $("chat").hidden = false;
    showError("");
    socket = tidings.connect({ auth: () => ({ name: nick }) });
    socket.on("state", showState);
    socket.on("upgrade", showTransport);
    // Each connection, the first and every one after a reconnect, asks to be in the room under this
    // tab's nickname, and hears whether it is (after a reconnect tidings.js has asked already, before
    // "connect": this second ask is answered "ok" at once, or with the refusal).
    socket.on("connect", () => socket.subscribe(channel).then(entered, () => {}));
    socket.on("disconnect", () => {
      members.clear();
      showMembers();
    });
    socket.on("connect_error", (error) => {
      if (error.type === "server") refused(error.message); // final: a new nickname, a new connection
    });
    socket.on("message", received);
    socket.on("presence", presenceChanged);
    showState();
  }

  function entered(answer) {
    if (answer && answer.ok === true) {
      tookNick(nick, chosen);
      chosen = false;
      return socket.emit("presence", channel, present);
    }
    // Refused (the nickname is taken in the room): this connection is done, another name opens another.
    socket.close();
    refused(answer ? answer.error : "no answer");
  }

  // Not in the room, and why: the chat goes until a nickname is taken.
  function refused(error) {
    $("chat").hidden = true;
    askNick(error);
  }

  function rename(name) {
    socket.emit("rename", name, (answer) => {
      if (!answer || answer.ok !== true) return askNick(answer ? answer.error : "no answer");
      setNick(name);
      tookNick(name, true);
      $("nick-form").hidden = true;
      socket.emit("presence", channel, present);
    });
  }

  $("nick-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("nick").value.trim();
    if (!name) return;
    if (socket && socket.state !== "disconnected") return rename(name);
    setNick(name);
    chosen = true;
    start();
  });

  $("change-nick").addEventListener("click", () => askNick(""));

  $("message-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message");
    if (!input.value.trim() || !socket) return;
    socket.send(input.value, channel, (answer) => showError(answer && answer.ok === false ? answer.error : ""));
    input.value = "";
  });

  const preset = new URLSearchParams(location.search).get("name");
  chosen = Boolean(preset && preset.trim());
  setNick(chosen ? preset.trim() : storedNick("sessionStorage"));
  if (nick) start();
  else askNick("");
})();
