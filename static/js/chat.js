/* Chat page behaviour (no inline script: CSP). The server drives the page through htmx
   out-of-band swaps over the websocket; this file only does what HTML cannot:
   Enter to send, growing the composer, keeping the view pinned to the newest text, copying,
   dialogs, and telling the server what a (re)connected tab already shows. */
(function () {
  "use strict";

  var NEAR_BOTTOM_PX = 96;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  function scroller() { return $("#chat-scroll"); }
  function nearBottom() {
    var el = scroller();
    return !el || el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM_PX;
  }
  function toBottom() {
    var el = scroller();
    if (el) { el.scrollTop = el.scrollHeight; }
  }
  function streaming() { return !!$('#composer-actions [data-action="stop"]'); }

  // --- composer ---------------------------------------------------------------------------
  function textarea() { return $('#composer textarea[name="content"]'); }

  function grow() {
    var ta = textarea();
    if (!ta) { return; }
    ta.style.height = "auto"; // CSSOM property, not an inline style attribute: allowed by CSP
    ta.style.height = Math.min(ta.scrollHeight, 240) + "px";
  }

  function updateCount() {
    var ta = textarea(), out = $("#composer-count");
    if (!ta || !out) { return; }
    var max = parseInt(ta.getAttribute("data-max-chars") || "0", 10);
    var n = ta.value.length;
    if (max && n > max * 0.8) {
      out.textContent = n.toLocaleString() + " / " + max.toLocaleString();
      out.classList.toggle("is-over", n >= max);
    } else {
      out.textContent = "";
    }
  }

  function showError(text) {
    var el = $("#composer-error");
    if (el) { el.textContent = text; }
  }

  document.addEventListener("keydown", function (event) {
    var ta = textarea();
    if (event.target !== ta || event.key !== "Enter" || event.shiftKey || event.isComposing) { return; }
    event.preventDefault();
    if (!ta.value.trim()) { return; }
    if (streaming()) { showError("Claude is still answering. Wait for the reply or stop it first."); return; }
    ta.form.requestSubmit();
  });

  document.addEventListener("input", function (event) {
    if (event.target === textarea()) { grow(); updateCount(); showError(""); }
  });

  document.body.addEventListener("htmx:wsConfigSend", function (event) {
    var params = event.detail.parameters || {};
    if ((params.action || "send") !== "send") { return; }
    var content = (params.content || "").trim();
    if (!content) { event.preventDefault(); return; }
    if (streaming()) {
      event.preventDefault();
      showError("Claude is still answering. Wait for the reply or stop it first.");
    }
  });

  document.body.addEventListener("htmx:wsAfterSend", function (event) {
    var form = event.target.closest && event.target.closest("#composer");
    var sent = {};
    try { sent = JSON.parse(event.detail.message || "{}"); } catch (e) { sent = {}; }
    if ((sent.action === "send" || (!sent.action && sent.content)) && form) {
      form.reset();
      grow();
      updateCount();
    }
    if (sent.action === "send") { pinned = true; toBottom(); }
  });

  // --- the socket ---------------------------------------------------------------------------
  var pinned = true;

  document.body.addEventListener("htmx:wsOpen", function (event) {
    var status = $("#connection-status");
    if (status) { status.hidden = true; }
    var ids = $all('#message-list [data-message-id]');
    var last = ids.length ? ids[ids.length - 1].getAttribute("data-message-id") : "";
    var live = $all('#message-list [data-status="streaming"]').map(function (el) {
      return el.getAttribute("data-message-id");
    });
    event.detail.socketWrapper.send(JSON.stringify({ action: "sync", last: last, streaming: live }));
  });

  document.body.addEventListener("htmx:wsClose", function () {
    var status = $("#connection-status");
    if (status) { status.hidden = false; }
  });

  document.body.addEventListener("htmx:wsBeforeMessage", function () { pinned = nearBottom(); });
  document.body.addEventListener("htmx:wsAfterMessage", function () {
    if (pinned) { toBottom(); }
    var chat = $("#chat");
    if (chat) { chat.classList.toggle("is-streaming", streaming()); }
  });

  // --- clicks ---------------------------------------------------------------------------------
  function copyText(text, button) {
    var done = function () {
      var old = button.getAttribute("data-label") || button.textContent;
      button.setAttribute("data-label", old);
      button.classList.add("is-copied");
      if (button.classList.contains("code-copy")) { button.textContent = "Copied"; }
      setTimeout(function () {
        button.classList.remove("is-copied");
        if (button.classList.contains("code-copy")) { button.textContent = old; }
      }, 1400);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () {});
    }
  }

  function setSidebar(open) {
    var sidebar = $("#sidebar");
    if (sidebar) { sidebar.classList.add("can-animate"); }
    document.body.classList.toggle("sidebar-open", open);
    $all('[data-action="toggle-sidebar"][aria-expanded]').forEach(function (b) {
      b.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("button, [data-action], [data-open-dialog], [data-close-dialog]") : null;
    if (!target) { return; }
    var action = target.getAttribute("data-action");
    if (action === "copy") {
      var code = target.closest(".codeblock");
      if (code) { copyText($("pre", code).innerText, target); }
    } else if (action === "copy-message") {
      var body = $(".msg-body", target.closest(".msg"));
      if (body) { copyText(body.innerText.trim(), target); }
    } else if (action === "toggle-sidebar") {
      setSidebar(!document.body.classList.contains("sidebar-open"));
    }
    var open = target.getAttribute("data-open-dialog");
    if (open) {
      var dialog = document.getElementById(open);
      if (dialog && dialog.showModal) { dialog.showModal(); }
    }
    if (target.hasAttribute("data-close-dialog")) {
      var parent = target.closest("dialog");
      if (parent) { parent.close(); }
    }
  });

  // A dialog closes on a click on its backdrop.
  document.addEventListener("click", function (event) {
    if (event.target.tagName === "DIALOG") { event.target.close(); }
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    var form = event.detail.target;
    if (form && form.id === "settings-form" && form.hasAttribute("data-saved")) {
      setTimeout(function () {
        var dialog = $("#settings-dialog");
        if (dialog && dialog.open) { dialog.close(); }
      }, 600);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) { setSidebar(false); }
  });

  // --- start ---------------------------------------------------------------------------------
  function start() {
    toBottom();
    grow();
    var ta = textarea();
    if (ta && window.matchMedia("(min-width: 768px)").matches) { ta.focus(); }
    var chat = $("#chat");
    if (chat) { chat.classList.toggle("is-streaming", streaming()); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
