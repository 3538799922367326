/* A room of `tidings demo`: asks a nickname once (kept in localStorage, or ?name=...), joins the
 * room's channel with tidings.js and shows its messages, its notices and who is here.
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

  function storedNick() {
    try {
      return localStorage.getItem(NICK_KEY) || "";
    } catch (error) {
      return ""; // storage disabled: ask every time
    }
  }

  function storeNick(name) {
    nick = name;
    $("me").textContent = name;
    try {
      localStorage.setItem(NICK_KEY, name);
    } catch (error) {
      // kept for this page only
    }
  }

  function askNick(error) {
    $("nick").value = nick;
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

  function presenceChange(joined) {
    return (from, member) => {
      if (from !== channel) return; // the directory's events: other rooms
      if (joined) members.set(member.session_id, member.info.name);
      else members.delete(member.session_id);
      showMembers();
    };
  }

  function start() {
    $("nick-form").hidden = true;
    $("chat").hidden = false;
    showError("");
    socket = tidings.connect({ auth: () => ({ name: nick }) });
    socket.on("state", showState);
    socket.on("upgrade", showTransport);
    // The room is subscribed again by tidings.js after every reconnect, before "connect" fires;
    // the presence request goes after it, so it is answered once the socket is in.
    socket.on("connect", () => socket.emit("presence", channel, present));
    socket.on("disconnect", () => {
      members.clear();
      showMembers();
    });
    socket.on("connect_error", (error) => {
      if (error.type === "server") askNick(error.message); // refused: a new nickname, a new connection
    });
    socket.on("message", received);
    socket.on("join", presenceChange(true));
    socket.on("leave", presenceChange(false));
    socket.subscribe(channel).then(
      (answer) => answer.ok || showError(answer.error),
      () => {} // the connection was refused or closed: said elsewhere
    );
    showState();
  }

  function rename(name) {
    socket.emit("rename", name, (answer) => {
      if (!answer || answer.ok !== true) return askNick(answer ? answer.error : "no answer");
      storeNick(name);
      $("nick-form").hidden = true;
      socket.emit("presence", channel, present);
    });
  }

  $("nick-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("nick").value.trim();
    if (!name) return;
    if (socket && socket.state !== "disconnected") return rename(name);
    storeNick(name);
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
  if (preset && preset.trim()) storeNick(preset.trim());
  else nick = storedNick();
  if (nick) {
    $("me").textContent = nick;
    start();
  } else {
    askNick("");
  }
})();
