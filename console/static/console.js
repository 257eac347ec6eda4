// The agent console: polls the queue and the open conversation, sends the agent's actions.
// Every POST carries the session's CSRF token (meta csrf-token) in X-CSRF-Token.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const me = document.querySelector('meta[name="agent"]').content;
  const $ = (id) => document.getElementById(id);
  const QUEUE_MS = 1500, CONVERSATION_MS = 1000;
  let current = null;      // sender id of the open conversation
  let shown = "";          // signature of the transcript on screen
  let claimedBy = null;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  async function api(method, path, body) {
    const options = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) { window.location.href = "/login"; throw new Error("signed out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  function waited(seconds) {
    if (seconds < 60) return `${seconds} s`;
    const minutes = Math.floor(seconds / 60);
    return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function status(text, isError) {
    $("conv-status").textContent = text || "";
    $("conv-status").classList.toggle("error", !!isError);
  }

  async function refreshQueue() {
    let data;
    try { data = await api("GET", "/api/queue"); } catch (e) { return; }
    const list = $("queue");
    list.replaceChildren();
    $("queue-count").textContent = String(data.conversations.length);
    $("queue-empty").hidden = data.conversations.length > 0;
    for (const c of data.conversations) {
      const last = c.last_messages.map((m) => el("li", { class: `last ${m.kind}`, text: `${m.kind === "user" ? "Customer" : m.kind === "agent" ? (m.author || "Agent") : "Bot"}: ${m.text}` }));
      const holder = c.claimed_by ? (c.claimed_by === me ? "you hold it" : `held by ${c.claimed_by}`) : "unclaimed";
      const button = el("button", { type: "button", class: "open", "data-sender": c.sender, "aria-current": c.sender === current ? "true" : null }, [
        el("span", { class: "sender", text: c.customer ? `Customer ${c.customer}` : "Anonymous visitor" }),
        el("span", { class: "waited", text: `waiting ${waited(c.waiting_s)}` }),
        el("span", { class: "reason", text: c.reason }),
        el("span", { class: `holder${c.claimed_by ? "" : " free"}`, text: holder }),
      ]);
      button.addEventListener("click", () => openConversation(c.sender));
      list.append(el("li", { class: "item", "data-sender": c.sender }, [button, el("ul", { class: "lasts" }, last)]));
    }
  }

  function render(data) {
    const entries = data.messages.concat(data.notes).sort((a, b) => a.ts - b.ts);
    const signature = JSON.stringify([entries.length, entries.length && entries[entries.length - 1].ts, data.claimed_by, data.status]);
    claimedBy = data.claimed_by;
    const mine = data.claimed_by === me, open = data.status === "open";
    $("conv-meta").textContent = `${data.customer ? "Customer " + data.customer : "Anonymous visitor"} · ${data.reason} · ` +
      (open ? (data.claimed_by ? (mine ? "you hold it" : `held by ${data.claimed_by}`) : "unclaimed") : "handed back / closed");
    $("claim").disabled = !open || !!data.claimed_by;
    $("release").disabled = !open || (data.claimed_by && !mine);
    $("close").disabled = !open || (data.claimed_by && !mine);
    $("send").disabled = !open || !mine;
    $("reply").disabled = !open || !mine;
    if (signature === shown) return;
    shown = signature;
    const log = $("transcript");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.replaceChildren(...entries.map((m) => {
      const who = { user: "Customer", bot: "Bot", agent: m.author || "Agent", note: `Note by ${m.author}`, event: "" }[m.kind];
      const time = new Date(m.ts * 1000).toLocaleTimeString();
      return el("li", { class: `msg ${m.kind}` }, [
        el("span", { class: "who", text: who ? `${who} · ${time}` : time }),
        el("span", { class: "text", text: m.text }),
      ]);
    }));
    if (atBottom || entries.length < 30) log.scrollTop = log.scrollHeight;
  }

  async function refreshConversation() {
    if (!current) return;
    const sender = current;
    try {
      const data = await api("GET", `/api/conversation?sender=${encodeURIComponent(sender)}`);
      if (sender === current) render(data);
    } catch (e) { if (sender === current) status(e.message, true); }
  }

  function openConversation(sender) {
    current = sender; shown = "";
    $("conversation").hidden = false;
    $("conv-title").textContent = `Conversation ${sender}`;
    status("");
    document.querySelectorAll("#queue button.open").forEach((b) => b.setAttribute("aria-current", String(b.dataset.sender === sender)));
    refreshConversation();
  }

  async function act(path, body, done) {
    try { await api("POST", path, Object.assign({ sender: current }, body || {})); status(done); }
    catch (e) { status(e.message, true); }
    refreshConversation(); refreshQueue();
  }

  $("claim").addEventListener("click", () => act("/api/claim", {}, "You hold this conversation."));
  $("release").addEventListener("click", () => act("/api/release", {}, "Handed back to the bot."));
  $("close").addEventListener("click", () => act("/api/close", {}, "Conversation closed."));
  $("reply-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("reply").value.trim();
    if (!text) return;
    $("reply").value = "";  // cleared at once: the agent may type the next one meanwhile
    try { await api("POST", "/api/reply", { sender: current, text }); status("Sent."); }
    catch (e) {
      status(e.message, true);
      if (!$("reply").value) $("reply").value = text;  // not sent: give it back
    }
    refreshConversation();
  });
  $("reply").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("note-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("note").value.trim();
    if (!text) return;
    try { await api("POST", "/api/note", { sender: current, text }); $("note").value = ""; status("Note saved."); }
    catch (e) { status(e.message, true); }
    refreshConversation();
  });
  $("kb-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = $("kb-query").value.trim();
    const results = $("kb-results");
    results.replaceChildren();
    if (!q) return;
    const data = await api("GET", `/api/knowledge?q=${encodeURIComponent(q)}`).catch(() => ({ passages: [] }));
    if (!data.passages.length) results.append(el("li", { class: "muted", text: "No passage found." }));
    for (const p of data.passages) {
      const insert = el("button", { type: "button", text: "Insert" });
      insert.addEventListener("click", () => {
        const box = $("reply");
        box.value = (box.value ? box.value.trimEnd() + "\n\n" : "") + p.text + `\n\nSource: ${p.title}`;
        box.focus();
      });
      results.append(el("li", { class: "passage" }, [
        el("strong", { text: p.title + (p.heading ? ` · ${p.heading}` : "") }), el("p", { text: p.text }), insert,
      ]));
    }
  });

  refreshQueue();
  setInterval(refreshQueue, QUEUE_MS);
  setInterval(refreshConversation, CONVERSATION_MS);
})();
