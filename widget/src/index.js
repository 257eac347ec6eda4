// Lakeside chat widget: a chat window for Rasa's socket.io channel.
//
// Embed with one tag (the stylesheet next to the script is loaded automatically):
//   <script src="/widget/lakeside-chat.js" data-server-url="https://bot.example.com"
//           data-title="Lakeside Bank" data-initial-payload="/greet"></script>
// or call window.LakesideChat.init({...}) yourself (see README.md, "Chat widget").
//
// Conversation state: the session id (Rasa's sender id) and a copy of the messages
// live in localStorage, so a reload shows the conversation at once. On every
// (re)connect the widget asks the server for the conversation's messages from the
// tracker store ("history" event) and shows exactly those, so replies sent while the
// network was down appear after reconnecting. Messages typed while offline wait in an
// outbox (also in localStorage) and are sent, in order, once the session is back.
import { io } from "socket.io-client";
import { renderMarkdown, escapeHtml } from "./markdown.js";

const DEFAULTS = {
  serverUrl: "",            // Rasa's base URL; default: this page's host, port 5005
  socketPath: "/socket.io/",
  title: "Lakeside Bank",
  subtitle: "Virtual assistant",
  primaryColor: "#0b5d4b",
  accentColor: "#f2b705",
  initialPayload: "/greet", // sent once when a new conversation starts ("" = none)
  token: "",                // JWT for the socket.io channel, when the server requires one
  storageKey: "lakeside-chat",
  open: false,              // start with the window open
  typingTimeoutMs: 90000,   // hide the typing indicator if no reply comes
  placeholder: "Type your message…",
  cssUrl: null,             // stylesheet; default: lakeside-chat.css next to the script
  helpUrl: "",              // help page of a cited knowledge page, "{page}" = its id: the "Source:" line links there
};

const SCRIPT = document.currentScript;

function optionsFromScript(script) {
  if (!script) return {};
  const d = script.dataset;
  const out = {};
  for (const key of Object.keys(DEFAULTS)) if (d[key] !== undefined) out[key] = d[key];
  if (out.open !== undefined) out.open = out.open !== "false";
  return out;
}

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "s-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

class Store {
  constructor(prefix) {
    this.prefix = prefix;
  }
  get(name, fallback) {
    try {
      const raw = localStorage.getItem(`${this.prefix}:${name}`);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) {
      return fallback;
    }
  }
  set(name, value) {
    try {
      localStorage.setItem(`${this.prefix}:${name}`, JSON.stringify(value));
    } catch (e) {
      /* storage full or disabled: the widget still works for this page view */
    }
  }
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

// A bot_uttered payload (Rasa's SocketIOOutput) as the widget's message record.
export function botMessage(data) {
  const msg = { from: "bot", text: "", buttons: [], ts: Date.now() / 1000 };
  if (typeof data === "string") msg.text = data;
  if (data && typeof data === "object") {
    msg.text = data.text || "";
    msg.buttons = (data.quick_replies || data.buttons || []).map((b) => ({
      title: b.title,
      payload: b.payload,
    }));
    if (data.attachment && data.attachment.payload && data.attachment.payload.src) {
      msg.image = data.attachment.payload.src;
    }
    if (data.handoff !== undefined) msg.handoff = !!data.handoff;
    if (data.timestamp) msg.ts = data.timestamp;
    if (typeof data.author === "string" && data.author) msg.author = data.author; // a person from the support team
    if (Array.isArray(data.sources)) msg.sources = data.sources.filter((s) => typeof s === "string" && s);
  }
  return msg;
}

class ChatWidget {
  constructor(options) {
    this.o = { ...DEFAULTS, ...options };
    if (!this.o.serverUrl) this.o.serverUrl = `${location.protocol}//${location.hostname}:5005`;
    this.store = new Store(this.o.storageKey);
    this.sessionId = this.store.get("session", null);
    this.isNew = !this.sessionId;
    if (!this.sessionId) {
      this.sessionId = uuid();
      this.store.set("session", this.sessionId);
    }
    this.messages = this.store.get("messages", []);
    this.outbox = this.store.get("outbox", []);
    this.handoff = this.store.get("handoff", false);
    this.confirmed = false;
    this.typingTimer = null;
    this.loadCss();
    this.build();
    this.render();
    this.connect();
    if (this.o.open || this.store.get("open", false)) this.setOpen(true, false);
  }

  loadCss() {
    let href = this.o.cssUrl;
    if (!href && SCRIPT && SCRIPT.src) href = SCRIPT.src.replace(/\.js(\?.*)?$/, ".css");
    if (!href || document.querySelector(`link[data-lakeside-chat]`)) return;
    document.head.appendChild(el("link", { rel: "stylesheet", href, "data-lakeside-chat": "" }));
  }

  build() {
    const root = el("div", { class: "lsc-root" });
    root.style.setProperty("--lsc-primary", this.o.primaryColor);
    root.style.setProperty("--lsc-accent", this.o.accentColor);

    this.launcher = el("button", {
      class: "lsc-launcher", type: "button", "aria-label": `Open chat with ${this.o.title}`,
      "aria-expanded": "false", "aria-controls": "lsc-panel",
    });
    this.launcher.innerHTML = '<svg aria-hidden="true" viewBox="0 0 24 24" width="28" height="28"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
    this.launcher.addEventListener("click", () => this.setOpen(true));

    const title = el("h2", { id: "lsc-title", class: "lsc-title", text: this.o.title });
    const subtitle = el("p", { class: "lsc-subtitle", text: this.o.subtitle });
    this.closeButton = el("button", { class: "lsc-close", type: "button", "aria-label": "Close chat" });
    this.closeButton.innerHTML = '<span aria-hidden="true">×</span>';
    this.closeButton.addEventListener("click", () => this.setOpen(false));
    const header = el("div", { class: "lsc-header" }, [el("div", {}, [title, subtitle]), this.closeButton]);

    this.status = el("div", { class: "lsc-status", role: "status", "aria-live": "polite" });
    this.notice = el("div", { class: "lsc-notice", role: "status", hidden: "" });
    this.log = el("div", {
      class: "lsc-messages", role: "log", "aria-live": "polite", "aria-relevant": "additions",
      "aria-label": "Conversation", tabindex: "0",
    });
    this.typing = el("div", { class: "lsc-typing", role: "status", "aria-label": `${this.o.title} is typing`, hidden: "" });
    this.typing.append(
      el("span", { class: "lsc-dot", "aria-hidden": "true" }), el("span", { class: "lsc-dot", "aria-hidden": "true" }),
      el("span", { class: "lsc-dot", "aria-hidden": "true" }),
      el("span", { class: "lsc-typing-label", text: `${this.o.title} is typing…` }));

    this.input = el("textarea", {
      class: "lsc-input", rows: "1", "aria-label": "Message", placeholder: this.o.placeholder,
      maxlength: "4000",
    });
    this.sendButton = el("button", { class: "lsc-send", type: "submit", "aria-label": "Send message" });
    this.sendButton.innerHTML = '<svg aria-hidden="true" viewBox="0 0 24 24" width="20" height="20"><path fill="currentColor" d="M2 21l21-9L2 3v7l15 2-15 2z"/></svg>';
    this.form = el("form", { class: "lsc-form" }, [this.input, this.sendButton]);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendText(this.input.value);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        this.sendText(this.input.value);
      }
    });

    this.panel = el("section", {
      id: "lsc-panel", class: "lsc-panel", role: "dialog", "aria-labelledby": "lsc-title", hidden: "",
    }, [header, this.status, this.notice, this.log, this.typing, this.form]);
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.setOpen(false);
    });

    root.append(this.panel, this.launcher);
    document.body.appendChild(root);
    this.root = root;
  }

  setOpen(open, focus = true) {
    this.panel.hidden = !open;
    this.launcher.hidden = open;
    this.launcher.setAttribute("aria-expanded", String(open));
    this.store.set("open", open);
    if (open) {
      this.scrollDown();
      if (focus) this.input.focus();
    } else if (focus) {
      this.launcher.focus();
    }
  }

  // ---- connection ----------------------------------------------------------

  connect() {
    const opts = { path: this.o.socketPath, transports: ["websocket", "polling"], reconnectionDelayMax: 4000 };
    if (this.o.token) opts.auth = { token: this.o.token };
    const socket = io(this.o.serverUrl, opts);
    this.socket = socket;
    socket.on("connect", () => {
      this.confirmed = false;
      socket.emit("session_request", { session_id: this.sessionId });
    });
    socket.on("session_confirm", () => {
      this.confirmed = true;
      this.setStatus("");
      socket.emit("history_request", { session_id: this.sessionId });
      // A server without the history event still works: flush after a short wait.
      this.historyTimer = setTimeout(() => this.afterHistory(), 1500);
    });
    socket.on("history", (data) => {
      if (data && Array.isArray(data.messages)) {
        // The server's record, then what it cannot have yet: messages sent just
        // before the line dropped (no reply seen) and messages typed offline.
        const lastUser = [...data.messages].reverse().find((m) => m.from === "user");
        const unsent = this.messages.filter(
          (m) => m.from === "user" && (m.queued || (m.pending && (!lastUser || lastUser.text !== m.text)))
        );
        this.messages = data.messages.concat(unsent);
        this.handoff = !!data.handoff;
        this.save();
        this.render();
      }
      this.afterHistory();
    });
    socket.on("bot_uttered", (data) => this.receive(botMessage(data)));
    socket.on("disconnect", () => {
      this.confirmed = false;
      this.setStatus("Connection lost. Reconnecting…");
    });
    socket.on("connect_error", (err) => {
      const denied = err && /unauthori|denied|not allowed|rejected/i.test(String(err.message));
      this.setStatus(denied ? "This chat could not be authorised." : "Can't reach the assistant. Retrying…");
    });
  }

  afterHistory() {
    clearTimeout(this.historyTimer);
    if (!this.confirmed || this.historyDone === this.socket.id) return;
    this.historyDone = this.socket.id;
    if (this.isNew && this.o.initialPayload && !this.messages.length && !this.outbox.length) {
      this.isNew = false;
      this.emitMessage({ text: this.o.initialPayload, hidden: true });
    }
    const pending = this.outbox;
    this.outbox = [];
    this.save();
    for (const item of pending) this.emitMessage(item);
  }

  setStatus(text) {
    this.status.textContent = text;
    this.status.classList.toggle("lsc-status-on", !!text);
  }

  // ---- messages ------------------------------------------------------------

  sendText(text, display) {
    const message = String(text || "").trim();
    if (!message) return;
    this.input.value = "";
    const record = { from: "user", text: display || message, ts: Date.now() / 1000 };
    this.messages.push(record);
    this.append(record);
    this.emitMessage({ text: message, display: record.text }, record);
  }

  // Send now, or keep in the outbox until the session is back. `record` is the
  // message as shown: queued while in the outbox, pending until a reply arrives.
  emitMessage(item, record) {
    if (!this.confirmed) {
      if (record) record.queued = true;
      this.outbox.push(item);
      this.save();
      return;
    }
    const shown = record || this.messages.find((m) => m.queued && m.from === "user" && m.text === (item.display || item.text));
    if (shown) {
      delete shown.queued;
      shown.pending = true;
    }
    this.socket.emit("user_uttered", { message: item.text, session_id: this.sessionId });
    this.save();
    if (!this.handoff) this.showTyping(true);
  }

  receive(msg) {
    this.showTyping(false);
    if (msg.handoff !== undefined) this.setHandoff(msg.handoff);
    if (!msg.text && !msg.buttons.length && !msg.image) return;
    this.messages.forEach((m) => delete m.pending);
    this.messages.push(msg);
    this.save();
    this.append(msg);
    // More messages of the same reply may follow in quick succession.
    if (!this.handoff) this.showTyping(true, 1200);
  }

  setHandoff(active) {
    this.handoff = active;
    this.store.set("handoff", active);
    this.renderNotice();
    this.scrollDown();
    if (active) this.showTyping(false);
  }

  showTyping(on, timeoutMs) {
    clearTimeout(this.typingTimer);
    this.typing.hidden = !on;
    if (on) {
      this.typingTimer = setTimeout(() => (this.typing.hidden = true), timeoutMs || this.o.typingTimeoutMs);
      this.scrollDown();
    }
  }

  save() {
    this.store.set("messages", this.messages.slice(-200));
    this.store.set("outbox", this.outbox);
  }

  render() {
    this.log.innerHTML = "";
    this.messages.forEach((m, i) => this.append(m, i === this.messages.length - 1));
    this.renderNotice();
  }

  renderNotice() {
    this.notice.hidden = !this.handoff;
    this.notice.textContent = this.handoff
      ? "You're being connected to a person from our team. They will reply in this chat."
      : "";
  }

  append(msg, withButtons = true) {
    const bubble = el("div", { class: `lsc-msg lsc-${msg.from}` });
    const speaker = msg.from === "user" ? "You" : msg.author || this.o.title;
    const who = el("span", { class: "lsc-sr", text: `${speaker} said: ` });
    const body = el("div", { class: "lsc-text" });
    const source = this.sourceLink(msg);
    body.innerHTML = renderMarkdown(source ? source.text : msg.text || "");
    if (source) body.appendChild(source.line);
    bubble.append(who);
    if (msg.from === "bot" && msg.author) bubble.append(el("div", { class: "lsc-author", "aria-hidden": "true", text: msg.author }));
    bubble.append(body);
    if (msg.image) bubble.appendChild(el("img", { src: msg.image, alt: "", class: "lsc-image" }));
    this.log.appendChild(bubble);
    // Quick replies belong to the newest bot message only; older ones are spent.
    this.log.querySelectorAll(".lsc-replies").forEach((node) => node.remove());
    if (msg.from === "bot" && msg.buttons && msg.buttons.length && withButtons) {
      const replies = el("div", { class: "lsc-replies", role: "group", "aria-label": "Suggested replies" });
      for (const button of msg.buttons) {
        const b = el("button", { type: "button", class: "lsc-reply", text: button.title });
        b.addEventListener("click", () => {
          this.sendText(button.payload || button.title, button.title);
          this.input.focus(); // the button is gone with its reply: keep keyboard users in the chat
        });
        replies.appendChild(b);
      }
      this.log.appendChild(replies);
    }
    this.scrollDown();
  }

  // The answer's last line "Source: <page title>" as a link to the page's help page.
  sourceLink(msg) {
    const text = msg.text || "";
    const cut = text.lastIndexOf("\nSource: ");
    if (msg.from !== "bot" || !this.o.helpUrl || !msg.sources || msg.sources.length !== 1 || cut < 0) return null;
    const title = text.slice(cut + "\nSource: ".length).trim();
    const href = this.o.helpUrl.replace("{page}", encodeURIComponent(msg.sources[0]));
    if (!title || title.includes("\n") || !/^(https?:\/\/|\/)/i.test(href)) return null;
    const line = el("p", { class: "lsc-source" }, [document.createTextNode("Source: "),
      el("a", { href, target: "_blank", rel: "noopener noreferrer", text: title })]);
    return { text: text.slice(0, cut), line };
  }

  scrollDown() {
    this.log.scrollTop = this.log.scrollHeight;
  }
}

export function init(options = {}) {
  const widget = new ChatWidget({ ...optionsFromScript(SCRIPT), ...options });
  window.LakesideChat.instance = widget;
  return widget;
}

window.LakesideChat = { init, escapeHtml };
if (SCRIPT && SCRIPT.dataset.autoInit !== "false") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => init());
  else init();
}
