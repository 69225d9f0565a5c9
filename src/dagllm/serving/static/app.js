// dagllm chat page: the conversation lives here (sessionStorage), the server is stateless.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const STORE = "dagllm.chat.v1";
  const state = { history: [], limits: null, controller: null };
  const REASONS = { stop: "끝", length: "길이 제한", timeout: "시간 제한", cancelled: "중지됨" };

  function save() { sessionStorage.setItem(STORE, JSON.stringify(state.history)); }
  function load() {
    try { state.history = JSON.parse(sessionStorage.getItem(STORE) || "[]"); } catch { state.history = []; }
  }

  function bubble(role, text) {
    const li = document.createElement("li");
    li.className = "msg " + role;
    const span = document.createElement("span");
    span.className = "text";
    span.textContent = text;
    li.appendChild(span);
    $("messages").appendChild(li);
    $("empty").hidden = true;
    $("chat").scrollTop = $("chat").scrollHeight;
    return li;
  }
  function meta(li, text) {
    const m = document.createElement("span");
    m.className = "meta";
    m.textContent = text;
    li.appendChild(m);
  }
  function render() {
    $("messages").replaceChildren();
    $("empty").hidden = state.history.length > 0;
    for (const t of state.history) bubble(t.role, t.content);
  }

  async function loadInfo() {
    try {
      const r = await fetch("/api/info");
      const info = await r.json();
      const m = info.model;
      $("model-name").textContent = m.name;
      $("model-version").textContent = m.version;
      $("model-alias").textContent = m.alias || (m.aliases.length ? m.aliases.join(", ") : "없음");
      state.limits = info.limits;
      $("temperature").value = info.defaults.temperature;
      $("top-p").value = info.defaults.top_p;
      $("max-new-tokens").value = info.defaults.max_new_tokens;
      $("max-new-tokens").max = info.limits.max_new_tokens;
      $("input").maxLength = info.limits.max_message_chars;
      showSettings();
      const ready = await fetch("/readyz");
      $("ready-dot").className = "dot " + (ready.ok ? "ready" : "down");
      $("ready-dot").title = ready.ok ? "준비됨" : "준비 안 됨";
    } catch (e) {
      $("ready-dot").className = "dot down";
      $("ready-dot").title = "서버에 연결할 수 없습니다";
    }
  }
  function showSettings() {
    $("temperature-out").textContent = Number($("temperature").value).toFixed(2);
    $("top-p-out").textContent = Number($("top-p").value).toFixed(2);
  }

  // Server-Sent Events over a POST body: parse "event:"/"data:" blocks from the stream.
  async function* sse(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) yield { event, data: JSON.parse(data) };
      }
    }
  }

  function busy(on) {
    $("send").disabled = on;
    $("stop").hidden = !on;
    $("input").disabled = on;
  }

  async function send(message) {
    const prior = state.history.slice(-(state.limits ? state.limits.max_history_turns : 20));
    state.history.push({ role: "user", content: message });
    save();
    bubble("user", message);
    const li = bubble("assistant", "");
    li.classList.add("streaming");
    const text = li.querySelector(".text");
    const body = {
      message, history: prior,
      temperature: Number($("temperature").value), top_p: Number($("top-p").value),
      max_new_tokens: Number($("max-new-tokens").value),
    };
    state.controller = new AbortController();
    busy(true);
    let answer = "";
    try {
      const r = await fetch("/api/chat", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), signal: state.controller.signal,
      });
      if (!r.ok) {
        const err = await r.json().catch(() => ({ error: { message: r.statusText } }));
        const details = (err.error.details || []).map((d) => `${d.field}: ${d.message}`).join("; ");
        throw new Error(err.error.message + (details ? ` (${details})` : ""));
      }
      for await (const { event, data } of sse(r)) {
        if (event === "queued" && data.ahead > 0) meta(li, `대기 중: 앞에 ${data.ahead}개`);
        else if (event === "delta") { answer += data.text; text.textContent = answer; $("chat").scrollTop = $("chat").scrollHeight; }
        else if (event === "done") {
          li.querySelectorAll(".meta").forEach((m) => m.remove());
          meta(li, `토큰 ${data.tokens}개 · ${data.seconds.toFixed(2)}초 · ${REASONS[data.finish_reason] || data.finish_reason}`);
        } else if (event === "error") throw new Error(data.message);
      }
      if (!answer) text.textContent = "(빈 답변)";
      state.history.push({ role: "assistant", content: answer });
      save();
    } catch (e) {
      li.classList.add("error");
      if (e.name === "AbortError") meta(li, "중지됨");
      else { text.textContent = answer; meta(li, "오류: " + e.message); }
      if (answer) { state.history.push({ role: "assistant", content: answer }); save(); }
    } finally {
      li.classList.remove("streaming");
      state.controller = null;
      busy(false);
      $("input").focus();
    }
  }

  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const message = $("input").value.trim();
    if (!message || state.controller) return;
    $("input").value = "";
    send(message);
  });
  $("input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => { state.history = []; save(); render(); });
  $("temperature").addEventListener("input", showSettings);
  $("top-p").addEventListener("input", showSettings);

  load();
  render();
  loadInfo();
})();
