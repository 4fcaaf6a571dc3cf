// smtptut's web inbox: plain JavaScript over the sink's Mailpit-compatible API v1.
//
// Message data only ever reaches the page as text (textContent, setAttribute on
// attributes we choose): there is no innerHTML anywhere in this file.  A message's
// HTML part is shown only inside a sandboxed iframe without allow-scripts and
// without allow-same-origin, loaded from view/{ID}.html.
"use strict";

(function () {
  const PAGE_SIZE = 50;
  // Above this the raw source is offered as a download rather than shown inline.
  const RAW_INLINE_LIMIT = 1024 * 1024;
  const POLL_INTERVAL = 5000;
  const RECONNECT_MIN = 1000;
  const RECONNECT_MAX = 30000;
  const CONFIRM_WINDOW = 4000;

  const state = {
    query: "",
    start: 0,
    messages: [],
    total: 0,
    unread: 0,
    count: 0,
    openId: null,
    open: null,
    tab: null,
    listGeneration: 0,
    viewGeneration: 0,
    socket: null,
    live: false,
    reconnectDelay: RECONNECT_MIN,
    reconnectTimer: null,
    pollTimer: null,
    reloadTimer: null,
    pendingConfirm: null,
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ small helpers

  // Builds an element; strings among the children become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [name, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === "className") node.className = value;
        else if (name === "text") node.textContent = value;
        else node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";

  function paperclip() {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "14");
    svg.setAttribute("height", "14");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute(
      "d",
      "M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l9.2-9.2a3.7 3.7 0 0 1 5.2 5.2l-9.2 9.2a1.8 1.8 0 0 1-2.6-2.6l8.5-8.5"
    );
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    svg.append(path);
    return svg;
  }

  function idPath(id) {
    return encodeURIComponent(id);
  }

  function formatSize(bytes) {
    const n = Number(bytes) || 0;
    if (n < 1024) return n + " B";
    const units = ["KB", "MB", "GB", "TB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (value < 10 ? value.toFixed(1) : Math.round(value)) + " " + units[unit];
  }

  function parseDate(text) {
    const when = new Date(text);
    return isNaN(when.getTime()) ? null : when;
  }

  function formatAge(text) {
    const when = parseDate(text);
    if (!when) return "";
    const seconds = (Date.now() - when.getTime()) / 1000;
    if (seconds < 45) return "just now";
    if (seconds < 90) return "1 min";
    if (seconds < 45 * 60) return Math.round(seconds / 60) + " min";
    if (seconds < 22 * 3600) return Math.round(seconds / 3600) + " h";
    if (seconds < 7 * 86400) return Math.round(seconds / 86400) + " d";
    const sameYear = when.getFullYear() === new Date().getFullYear();
    return when.toLocaleDateString(undefined, {
      day: "numeric",
      month: "short",
      year: sameYear ? undefined : "numeric",
    });
  }

  function formatDate(text) {
    const when = parseDate(text);
    return when ? when.toLocaleString() : String(text || "");
  }

  function addressText(address) {
    if (!address) return "";
    const name = address.Name || "";
    const mail = address.Address || "";
    if (name && mail) return name + " <" + mail + ">";
    return name || mail;
  }

  function addressShort(address) {
    if (!address) return "";
    return address.Name || address.Address || "";
  }

  function addressList(list) {
    return (list || []).map(addressText).filter(Boolean).join(", ");
  }

  function recipientsShort(list) {
    const people = (list || []).filter(Boolean);
    if (people.length === 0) return "";
    const first = addressShort(people[0]);
    return people.length > 1 ? first + " +" + (people.length - 1) : first;
  }

  // True when the HTML part refers to anything on another host: only then is
  // the "load remote images" bar worth showing.
  const REMOTE_REFERENCE =
    /(?:\bsrc|\bsrcset|\bbackground|\bposter)\s*=\s*["']?\s*(?:https?:)?\/\/|url\(\s*["']?\s*(?:https?:)?\/\/|@import/i;

  // ------------------------------------------------------------ the API

  async function errorText(response) {
    const body = await response.text().catch(() => "");
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.Error === "string") return parsed.Error;
    } catch (ignored) {
      // Not JSON: Mailpit answers some errors as plain text.
    }
    const line = body.split("\n", 1)[0].trim();
    return line || response.status + " " + response.statusText;
  }

  async function request(method, path, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      // JSON with its Content-Type: a cross-site form cannot send this, and the
      // sink refuses state-changing requests that lack it.
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (!response.ok) throw new Error(await errorText(response));
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : response.text();
  }

  const getJSON = (path) => request("GET", path);

  function listPath(start) {
    const params = new URLSearchParams({ start: String(start), limit: String(PAGE_SIZE) });
    if (state.query) {
      params.set("query", state.query);
      return "api/v1/search?" + params.toString();
    }
    return "api/v1/messages?" + params.toString();
  }

  // ------------------------------------------------------------ banner

  function showError(text) {
    $("banner-text").textContent = text;
    $("banner").hidden = false;
  }

  function hideError() {
    $("banner").hidden = true;
  }

  async function attempt(what, action) {
    try {
      const result = await action();
      hideError();
      return result;
    } catch (failure) {
      showError(what + ": " + (failure && failure.message ? failure.message : String(failure)));
      return undefined;
    }
  }

  // ------------------------------------------------------------ the list

  async function loadList(options) {
    const quiet = options && options.quiet;
    const generation = ++state.listGeneration;
    const load = async () => {
      const data = await getJSON(listPath(state.start));
      if (generation !== state.listGeneration) return;
      const messages = Array.isArray(data.messages) ? data.messages : [];
      if (messages.length === 0 && state.start > 0 && (data.messages_count || 0) > 0) {
        // The page emptied under us (deletions): step back to the last one.
        state.start = Math.max(0, Math.floor((data.messages_count - 1) / PAGE_SIZE) * PAGE_SIZE);
        loadList(options);
        return;
      }
      state.messages = messages;
      state.total = Number(data.total) || 0;
      state.unread = Number(data.unread) || 0;
      state.count =
        data.messages_count !== undefined ? Number(data.messages_count) : state.query ? messages.length : state.total;
      renderList();
    };
    if (quiet) {
      try {
        await load();
      } catch (ignored) {
        // A poll that fails is retried on the next tick; the status shows why.
      }
    } else {
      await attempt("Could not load messages", load);
    }
  }

  function scheduleReload() {
    if (state.reloadTimer) return;
    state.reloadTimer = setTimeout(() => {
      state.reloadTimer = null;
      loadList({ quiet: true });
    }, 250);
  }

  function renderRow(message) {
    const unread = !message.Read;
    const subject = message.Subject || "(no subject)";
    const from = addressShort(message.From) || "(no sender)";
    const to = recipientsShort(message.To);
    const classes = ["message-row"];
    if (unread) classes.push("unread");
    if (message.ID === state.openId) classes.push("selected");

    const meta = el("span", { className: "row-meta" });
    if (Number(message.Attachments) > 0) {
      const count = Number(message.Attachments);
      meta.append(
        el(
          "span",
          {
            className: "attachment-mark",
            title: count === 1 ? "1 attachment" : count + " attachments",
          },
          paperclip()
        )
      );
    }
    meta.append(el("span", { className: "size", text: formatSize(message.Size) }));

    const row = el(
      "li",
      {
        className: classes.join(" "),
        "data-id": message.ID,
        tabindex: "0",
        role: "button",
        "aria-label": (unread ? "Unread: " : "") + subject + ", from " + from,
      },
      el(
        "div",
        { className: "row-line" },
        el("span", { className: "unread-dot", "aria-hidden": "true" }),
        el("span", { className: "from", text: from, title: addressText(message.From) }),
        el("time", {
          className: "age",
          text: formatAge(message.Created),
          title: formatDate(message.Created),
          "data-created": message.Created || "",
        })
      ),
      el(
        "div",
        { className: "row-line" },
        el("span", { className: "subject" + (message.Subject ? "" : " muted"), text: subject }),
        meta
      ),
      el(
        "div",
        { className: "row-line row-small" },
        el("span", { className: "to", text: to ? "to " + to : "", title: addressList(message.To) }),
        el("span", { className: "snippet", text: message.Snippet || "" })
      )
    );
    return row;
  }

  function renderList() {
    const list = $("message-list");
    list.replaceChildren(...state.messages.map(renderRow));
    const empty = state.messages.length === 0;
    $("empty-state").hidden = !empty;
    list.hidden = empty;
    if (empty && state.query) {
      $("empty-title").textContent = "No messages match";
      $("empty-text").textContent = "Nothing matches “" + state.query + "”. Try fewer words, or clear the search.";
    } else {
      $("empty-title").textContent = "No messages yet";
      $("empty-text").textContent = "Mail sent to this sink appears here as it arrives: no reload needed.";
    }
    renderCounts();
  }

  function renderCounts() {
    const parts = [];
    if (state.query) {
      parts.push(state.count + (state.count === 1 ? " match" : " matches"));
    } else {
      parts.push(state.total + (state.total === 1 ? " message" : " messages"));
    }
    if (state.unread > 0) parts.push(state.unread + " unread");
    $("counts").textContent = parts.join(" · ");
    document.title = (state.unread > 0 ? "(" + state.unread + ") " : "") + "Inbox · smtptut";

    const count = state.count;
    const pager = $("pager");
    pager.hidden = count <= PAGE_SIZE && state.start === 0;
    const last = Math.min(state.start + state.messages.length, count);
    $("page-info").textContent = count ? state.start + 1 + "–" + last + " of " + count : "";
    $("page-prev").disabled = state.start === 0;
    $("page-next").disabled = state.start + PAGE_SIZE >= count;

    const deleteAll = $("delete-all");
    if (!state.pendingConfirm) {
      deleteAll.textContent = state.query ? "Delete matches" : "Delete all";
    }
    deleteAll.disabled = count === 0;
    $("mark-all-read").disabled = state.unread === 0;
  }

  function refreshAges() {
    for (const node of document.querySelectorAll("time.age[data-created]")) {
      node.textContent = formatAge(node.getAttribute("data-created"));
    }
  }

  function findRow(id) {
    for (const row of $("message-list").children) {
      if (row.getAttribute("data-id") === id) return row;
    }
    return null;
  }

  function setRowRead(id, read) {
    const message = state.messages.find((m) => m.ID === id);
    if (message) message.Read = read;
    const row = findRow(id);
    if (row) row.classList.toggle("unread", !read);
    if (state.open && state.open.ID === id) {
      state.open.Read = read;
      $("toggle-read").textContent = read ? "Mark unread" : "Mark read";
    }
  }

  // ------------------------------------------------------------ live events

  function onEvent(event) {
    let parsed;
    try {
      parsed = JSON.parse(event.data);
    } catch (ignored) {
      return;
    }
    if (!parsed || typeof parsed.Type !== "string") return;
    const data = parsed.Data;
    switch (parsed.Type) {
      case "new":
        if (data && data.ID) onNewMessage(data);
        break;
      case "update":
        if (data && data.ID && typeof data.Read === "boolean") setRowRead(data.ID, data.Read);
        break;
      case "delete":
        if (data && data.ID) onDeleted(data.ID);
        break;
      case "truncate":
      case "prune":
        if (state.openId && parsed.Type === "truncate") closeView();
        scheduleReload();
        break;
      case "stats":
        if (data) {
          if (typeof data.Total === "number") state.total = data.Total;
          if (typeof data.Unread === "number") state.unread = data.Unread;
          if (!state.query) state.count = state.total;
          renderCounts();
        }
        break;
      default:
        break;
    }
  }

  function onNewMessage(message) {
    if (state.query || state.start > 0) {
      // Whether it matches the search, or where it lands, is the server's call.
      scheduleReload();
      return;
    }
    if (state.messages.some((m) => m.ID === message.ID)) return;
    state.messages.unshift(message);
    if (state.messages.length > PAGE_SIZE) state.messages.length = PAGE_SIZE;
    state.total += 1;
    state.count = state.total;
    if (!message.Read) state.unread += 1;
    const list = $("message-list");
    const row = renderRow(message);
    row.classList.add("fresh");
    list.prepend(row);
    while (list.children.length > PAGE_SIZE) list.lastElementChild.remove();
    list.hidden = false;
    $("empty-state").hidden = true;
    renderCounts();
  }

  function onDeleted(id) {
    const index = state.messages.findIndex((m) => m.ID === id);
    if (index >= 0) {
      state.messages.splice(index, 1);
      const row = findRow(id);
      if (row) row.remove();
      // Refill the page from the server rather than guess what comes next.
      scheduleReload();
    }
    if (state.openId === id) closeView();
  }

  function setConnection(live) {
    state.live = live;
    const status = $("connection");
    status.textContent = live ? "Live" : "Polling";
    status.classList.toggle("live", live);
    status.title = live
      ? "New mail appears as it arrives (websocket /api/events)"
      : "The live event stream is down: checking for mail every " + POLL_INTERVAL / 1000 + " s";
  }

  function startPolling() {
    if (state.pollTimer) return;
    state.pollTimer = setInterval(() => loadList({ quiet: true }), POLL_INTERVAL);
  }

  function stopPolling() {
    if (!state.pollTimer) return;
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  function connect() {
    state.reconnectTimer = null;
    let socket;
    try {
      const url = new URL("api/events", location.href);
      url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      url.hash = "";
      url.search = "";
      socket = new WebSocket(url.toString());
    } catch (ignored) {
      onSocketClosed();
      return;
    }
    state.socket = socket;
    socket.addEventListener("open", () => {
      const wasPolling = state.pollTimer !== null;
      state.reconnectDelay = RECONNECT_MIN;
      stopPolling();
      setConnection(true);
      // Whatever arrived while the socket was down.
      if (wasPolling) loadList({ quiet: true });
    });
    socket.addEventListener("message", onEvent);
    socket.addEventListener("close", () => {
      if (state.socket === socket) onSocketClosed();
    });
    socket.addEventListener("error", () => socket.close());
  }

  function onSocketClosed() {
    state.socket = null;
    setConnection(false);
    startPolling();
    if (state.reconnectTimer) return;
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  // ------------------------------------------------------------ the message view

  function routeState() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    return { id: params.get("m"), query: params.get("q") || "" };
  }

  function setRoute(id, query, replace) {
    const params = new URLSearchParams();
    if (query) params.set("q", query);
    if (id) params.set("m", id);
    const hash = params.toString();
    const url = location.pathname + location.search + (hash ? "#" + hash : "");
    if (url === location.pathname + location.search + location.hash) return;
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
  }

  function envelopeRow(name, value) {
    if (!value) return [];
    return [el("dt", { text: name }), el("dd", { text: value })];
  }

  function attachmentItem(id, part, inline) {
    const name = part.FileName || part.ContentID || "part " + part.PartID;
    const href = "api/v1/message/" + idPath(id) + "/part/" + encodeURIComponent(part.PartID);
    const details = [part.ContentType || "", formatSize(part.Size)];
    if (inline) details.push("inline");
    return el(
      "li",
      null,
      el(
        "a",
        { className: "attachment", href, download: name, title: "Download " + name },
        paperclip(),
        el("span", { className: "attachment-name", text: name })
      ),
      el("span", { className: "attachment-meta", text: details.filter(Boolean).join(" · ") })
    );
  }

  async function openMessage(id) {
    const generation = ++state.viewGeneration;
    state.openId = id;
    for (const row of $("message-list").children) {
      row.classList.toggle("selected", row.getAttribute("data-id") === id);
    }
    const message = await attempt("Could not open the message", () =>
      getJSON("api/v1/message/" + idPath(id))
    );
    if (generation !== state.viewGeneration) return;
    if (!message) {
      closeView();
      return;
    }
    state.open = message;
    // Opening marks it read on the server, as Mailpit does.
    const listed = state.messages.find((m) => m.ID === id);
    if (listed && !listed.Read) {
      setRowRead(id, true);
      state.unread = Math.max(0, state.unread - 1);
      renderCounts();
    }
    renderView(message);
  }

  function renderView(message) {
    const id = message.ID;
    const subject = $("view-subject");
    subject.textContent = message.Subject || "(no subject)";
    subject.classList.toggle("muted", !message.Subject);

    $("envelope").replaceChildren(
      ...envelopeRow("From", addressText(message.From)),
      ...envelopeRow("To", addressList(message.To)),
      ...envelopeRow("Cc", addressList(message.Cc)),
      ...envelopeRow("Bcc", addressList(message.Bcc)),
      ...envelopeRow("Reply-To", addressList(message.ReplyTo)),
      ...envelopeRow("Date", formatDate(message.Date)),
      ...envelopeRow("Size", formatSize(message.Size)),
      ...envelopeRow("Message-ID", message.MessageID ? "<" + message.MessageID + ">" : "")
    );

    const parts = [
      ...(message.Attachments || []).map((part) => attachmentItem(id, part, false)),
      ...(message.Inline || []).map((part) => attachmentItem(id, part, true)),
    ];
    $("attachment-list").replaceChildren(...parts);
    $("attachment-list").hidden = parts.length === 0;

    $("toggle-read").textContent = message.Read === false ? "Mark read" : "Mark unread";
    const raw = $("download-raw");
    raw.setAttribute("href", "api/v1/message/" + idPath(id) + "/raw");
    raw.setAttribute("download", (message.Subject || id).replace(/[\\/:*?"<>|\r\n\t]+/g, "_").slice(0, 80) + ".eml");

    $("text-body").textContent = message.Text || "";
    $("text-body").classList.toggle("muted", !message.Text);
    if (!message.Text) $("text-body").textContent = "(This message has no text part.)";
    $("headers-body").replaceChildren();
    $("raw-body").replaceChildren();
    $("html-frame").removeAttribute("src");
    $("html-frame").removeAttribute("data-remote");

    const hasHTML = Boolean(message.HTML);
    $("tab-html").hidden = !hasHTML;
    $("remote-bar").hidden = !(hasHTML && REMOTE_REFERENCE.test(message.HTML));
    let tab = state.tab;
    if (!tab || (tab === "pane-html" && !hasHTML)) tab = hasHTML ? "pane-html" : "pane-text";
    showTab(tab, false);

    $("view").hidden = false;
    $("placeholder").hidden = true;
    document.body.classList.add("viewing");
    $("view").scrollTop = 0;
  }

  function htmlSource(id, remote) {
    return "view/" + idPath(id) + ".html?remote=" + (remote ? "1" : "0");
  }

  function showTab(pane, remember) {
    if (remember) state.tab = pane;
    for (const tab of document.querySelectorAll(".tab")) {
      const active = tab.getAttribute("data-pane") === pane;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", active ? "true" : "false");
      $(tab.getAttribute("data-pane")).hidden = !active;
    }
    const message = state.open;
    if (!message) return;
    if (pane === "pane-html") {
      const frame = $("html-frame");
      if (!frame.getAttribute("src")) frame.setAttribute("src", htmlSource(message.ID, false));
    } else if (pane === "pane-headers") {
      loadHeaders(message);
    } else if (pane === "pane-raw") {
      loadRaw(message);
    }
  }

  async function loadHeaders(message) {
    const body = $("headers-body");
    if (body.children.length) return;
    const generation = state.viewGeneration;
    const headers = await attempt("Could not load the headers", () =>
      getJSON("api/v1/message/" + idPath(message.ID) + "/headers")
    );
    if (!headers || generation !== state.viewGeneration) return;
    const rows = [];
    for (const [name, values] of Object.entries(headers)) {
      for (const value of Array.isArray(values) ? values : [values]) {
        rows.push(el("tr", null, el("th", { scope: "row", text: name }), el("td", { text: String(value) })));
      }
    }
    body.replaceChildren(...rows);
  }

  async function loadRaw(message) {
    const body = $("raw-body");
    if (body.childNodes.length) return;
    const href = "api/v1/message/" + idPath(message.ID) + "/raw";
    if (Number(message.Size) > RAW_INLINE_LIMIT) {
      body.replaceChildren(
        "This message is " + formatSize(message.Size) + ", too large to show here. ",
        el("a", { href, download: message.ID + ".eml", text: "Download the source" }),
        "."
      );
      return;
    }
    const generation = state.viewGeneration;
    const text = await attempt("Could not load the source", async () => {
      const response = await fetch(href);
      if (!response.ok) throw new Error(await errorText(response));
      return response.text();
    });
    if (text === undefined || generation !== state.viewGeneration) return;
    body.textContent = text;
  }

  function closeView() {
    state.viewGeneration += 1;
    state.openId = null;
    state.open = null;
    $("view").hidden = true;
    $("placeholder").hidden = false;
    $("html-frame").removeAttribute("src");
    document.body.classList.remove("viewing");
    for (const row of document.querySelectorAll(".message-row.selected")) row.classList.remove("selected");
    // Replace rather than push: "back" after closing should not reopen it.
    if (routeState().id) setRoute(null, state.query, true);
  }

  // ------------------------------------------------------------ actions

  async function toggleRead() {
    const message = state.open;
    if (!message) return;
    const read = message.Read === false;
    const done = await attempt("Could not change the read flag", () =>
      request("PUT", "api/v1/messages", { IDs: [message.ID], Read: read })
    );
    if (done === undefined) return;
    setRowRead(message.ID, read);
    state.unread = Math.max(0, state.unread + (read ? -1 : 1));
    renderCounts();
  }

  async function deleteOne() {
    const message = state.open;
    if (!message) return;
    const done = await attempt("Could not delete the message", () =>
      request("DELETE", "api/v1/messages", { IDs: [message.ID] })
    );
    if (done === undefined) return;
    closeView();
    await loadList();
  }

  // A second click within a few seconds confirms: no blocking confirm() dialog.
  function confirmed(button, prompt) {
    if (state.pendingConfirm && state.pendingConfirm.button === button) {
      clearTimeout(state.pendingConfirm.timer);
      state.pendingConfirm = null;
      button.classList.remove("confirming");
      return true;
    }
    if (state.pendingConfirm) {
      clearTimeout(state.pendingConfirm.timer);
      state.pendingConfirm = null;
    }
    const label = button.textContent;
    button.textContent = prompt;
    button.classList.add("confirming");
    state.pendingConfirm = {
      button,
      timer: setTimeout(() => {
        state.pendingConfirm = null;
        button.textContent = label;
        button.classList.remove("confirming");
      }, CONFIRM_WINDOW),
    };
    return false;
  }

  async function deleteAll() {
    const button = $("delete-all");
    const what = state.query ? state.count + " matching" : "all " + state.total;
    if (!confirmed(button, "Click again to delete " + what)) return;
    button.textContent = state.query ? "Delete matches" : "Delete all";
    const done = await attempt("Could not delete", () =>
      state.query
        ? request("DELETE", "api/v1/search?" + new URLSearchParams({ query: state.query }).toString(), {})
        : request("DELETE", "api/v1/messages", {})
    );
    if (done === undefined) return;
    closeView();
    state.start = 0;
    await loadList();
  }

  async function markAllRead() {
    const body = state.query ? { IDs: state.messages.filter((m) => !m.Read).map((m) => m.ID), Read: true } : { Read: true };
    if (body.IDs && body.IDs.length === 0) return;
    const done = await attempt("Could not mark messages read", () => request("PUT", "api/v1/messages", body));
    if (done === undefined) return;
    await loadList();
  }

  function search(query, pushRoute) {
    const trimmed = query.trim();
    $("search-clear").hidden = trimmed === "";
    if (trimmed === state.query) return;
    state.query = trimmed;
    state.start = 0;
    if (pushRoute) setRoute(state.openId, state.query, true);
    loadList();
  }

  // ------------------------------------------------------------ wiring

  function applyRoute() {
    const route = routeState();
    if (route.query !== state.query) {
      $("search").value = route.query;
      search(route.query, false);
    }
    if (route.id && route.id !== state.openId) openMessage(route.id);
    else if (!route.id && state.openId) closeView();
  }

  function wire() {
    $("message-list").addEventListener("click", (event) => {
      const row = event.target.closest(".message-row");
      if (!row) return;
      setRoute(row.getAttribute("data-id"), state.query, false);
      applyRoute();
    });
    $("message-list").addEventListener("keydown", (event) => {
      const row = event.target.closest(".message-row");
      if (!row) return;
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        row.click();
      } else if (event.key === "ArrowDown" && row.nextElementSibling) {
        event.preventDefault();
        row.nextElementSibling.focus();
      } else if (event.key === "ArrowUp" && row.previousElementSibling) {
        event.preventDefault();
        row.previousElementSibling.focus();
      }
    });

    let typing = null;
    $("search").addEventListener("input", (event) => {
      clearTimeout(typing);
      typing = setTimeout(() => search(event.target.value, true), 300);
    });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(typing);
      search($("search").value, true);
    });
    $("search-clear").addEventListener("click", () => {
      $("search").value = "";
      search("", true);
      $("search").focus();
    });

    $("brand").addEventListener("click", (event) => {
      event.preventDefault();
      $("search").value = "";
      search("", false);
      closeView();
      setRoute(null, "", false);
    });
    $("back").addEventListener("click", () => {
      closeView();
    });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => showTab(tab.getAttribute("data-pane"), true));
    }
    $("load-remote").addEventListener("click", () => {
      if (!state.open) return;
      const frame = $("html-frame");
      frame.setAttribute("data-remote", "1");
      frame.setAttribute("src", htmlSource(state.open.ID, true));
      $("remote-bar").hidden = true;
    });
    $("toggle-read").addEventListener("click", toggleRead);
    $("delete-one").addEventListener("click", deleteOne);
    $("delete-all").addEventListener("click", deleteAll);
    $("mark-all-read").addEventListener("click", markAllRead);
    $("banner-close").addEventListener("click", hideError);
    $("page-prev").addEventListener("click", () => {
      state.start = Math.max(0, state.start - PAGE_SIZE);
      loadList();
    });
    $("page-next").addEventListener("click", () => {
      state.start += PAGE_SIZE;
      loadList();
    });
    window.addEventListener("hashchange", applyRoute);
    window.addEventListener("popstate", applyRoute);
    document.addEventListener("keydown", (event) => {
      if (event.target.closest("input, textarea")) return;
      if (event.key === "/") {
        event.preventDefault();
        $("search").focus();
      } else if (event.key === "Escape" && state.openId) {
        closeView();
      }
    });
    setInterval(refreshAges, 30000);
  }

  async function loadAbout() {
    try {
      const info = await getJSON("api/v1/info");
      // Mailpit's Version is a release number; smtptut's may be just its name.
      if (info && typeof info.Version === "string" && /^v?\d/.test(info.Version)) {
        $("version").textContent = "version " + info.Version;
      }
    } catch (ignored) {
      // The footer simply shows no version.
    }
    try {
      const webui = await getJSON("api/v1/webui");
      // A label names this instance; one that only repeats the brand says nothing.
      if (webui && typeof webui.Label === "string" && webui.Label && webui.Label.toLowerCase() !== "smtptut") {
        $("label").textContent = webui.Label;
        $("label").hidden = false;
      }
      if (webui && webui.HideDeleteAllButton === true) $("delete-all").hidden = true;
    } catch (ignored) {
      // No label.
    }
  }

  function start() {
    wire();
    // The full hint does not fit a phone's search box.
    const narrow = window.matchMedia("(max-width: 760px)");
    const hint = $("search").placeholder;
    const fitHint = () => {
      $("search").placeholder = narrow.matches ? "Search mail" : hint;
    };
    narrow.addEventListener("change", fitHint);
    fitHint();
    const route = routeState();
    state.query = route.query;
    $("search").value = route.query;
    $("search-clear").hidden = route.query === "";
    setConnection(false);
    $("connection").textContent = "Connecting…";
    loadList().then(() => {
      if (route.id) openMessage(route.id);
    });
    connect();
    loadAbout();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
