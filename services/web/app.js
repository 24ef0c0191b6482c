// Airlock web page: chat with vLLM's OpenAI API and transcribe speech with the ASR service, both
// same-origin behind the balancer. Plain JavaScript, no build step, no external resources.
"use strict";

(() => {
  const KEY_STORAGE = "airlock.apiKey";
  const MODEL_STORAGE = "airlock.model";
  const ASR_RATE = 16000;          // the ASR service's native rate: recordings are sent as 16 kHz mono WAV
  const MAX_RECORD_S = 300;        // recordings stop by themselves after five minutes
  // Formats the ASR service decodes itself (libsndfile); anything else is decoded here and sent as WAV.
  const SERVER_FORMATS = /\.(wav|wave|flac|ogg|oga|opus|mp3)$/i;

  const $ = (id) => document.getElementById(id);
  const el = {
    apiKey: $("api-key"), forgetKey: $("forget-key"), error: $("error"),
    model: $("model"), maxTokens: $("max-tokens"), stream: $("stream"), modelsStatus: $("models-status"),
    chatLog: $("chat-log"), chatForm: $("chat-form"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
    newChat: $("new-chat"),
    asrModel: $("asr-model"), language: $("language"), asrModelsStatus: $("asr-models-status"),
    uploadForm: $("upload-form"), audioFile: $("audio-file"), transcribe: $("transcribe"),
    record: $("record"), recordStatus: $("record-status"), playback: $("playback"), transcript: $("transcript"),
  };

  // ---------------------------------------------------------------- small helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);   // strings become text nodes: nothing is parsed as HTML
    return node;
  }

  const seconds = (ms) => (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";

  function storageGet(name) {
    try { return localStorage.getItem(name) || ""; } catch { return ""; }
  }
  function storageSet(name, value) {
    try { if (value) localStorage.setItem(name, value); else localStorage.removeItem(name); } catch { /* private mode */ }
  }

  // ---------------------------------------------------------------- errors, shown, never swallowed

  class ApiError extends Error {
    constructor(message, status, backend) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.backend = backend;
    }
  }

  function describe(err, withBackend = true) {
    if (err instanceof ApiError) {
      const where = err.backend && withBackend ? ` (answered by ${err.backend})` : "";
      const status = err.status && !err.message.startsWith(String(err.status)) ? `HTTP ${err.status}: ` : "";
      return status + err.message + where;
    }
    if (err && err.name === "NetworkError") return err.message;
    if (err instanceof Error) return err.message || String(err);
    return String(err);
  }

  function showError(context, err) {
    console.error(context, err);
    const close = h("button", { type: "button", class: "close", "aria-label": "Dismiss error" }, "×");
    close.addEventListener("click", clearError);
    el.error.replaceChildren(
      h("strong", {}, context + ": "), h("span", { class: "message" }, describe(err)), close);
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.error.replaceChildren();
  }

  window.addEventListener("error", (ev) => showError("Page error", ev.error || ev.message));
  window.addEventListener("unhandledrejection", (ev) => showError("Page error", ev.reason));

  // ---------------------------------------------------------------- API calls

  const apiKey = () => storageGet(KEY_STORAGE).trim();

  function messageFrom(text) {
    // OpenAI shape {"error": {"message"}}, vLLM's {"error": "Unauthorized"}, {"message"}, FastAPI's {"detail"},
    // or an HTML error page from the balancer (502, 413...).
    try {
      const j = JSON.parse(text);
      if (j && typeof j === "object") {
        if (typeof j.error === "string") return j.error;
        if (j.error && typeof j.error.message === "string") return j.error.message;
        if (typeof j.message === "string") return j.message;
        if (typeof j.detail === "string") return j.detail;
        if (Array.isArray(j.detail)) return j.detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
      }
      return text.slice(0, 300);
    } catch {
      const doc = new DOMParser().parseFromString(text, "text/html");   // inert: scripts do not run
      const title = doc.querySelector("title, h1");
      return ((title && title.textContent) || doc.body.textContent || "").replace(/\s+/g, " ").trim().slice(0, 300);
    }
  }

  async function errorFrom(resp, backend) {
    let text = "";
    try { text = await resp.text(); } catch { /* body lost: the status says enough */ }
    let msg = messageFrom(text) || resp.statusText || "request failed";
    if (resp.status === 401) {
      msg += apiKey() ? " — the API key was refused: check it at the top of the page."
        : " — this server needs an API key: enter it at the top of the page.";
      el.apiKey.setAttribute("aria-invalid", "true");
    } else if (resp.status === 413) {
      msg += " — the upload is larger than the balancer or the server accepts.";
    } else if (resp.status === 502 || resp.status === 504) {
      msg += " — the balancer could not get an answer from a worker.";
    }
    return new ApiError(msg, resp.status, backend);
  }

  async function api(path, init = {}) {
    const headers = new Headers(init.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", "Bearer " + key);
    let resp;
    try {
      resp = await fetch(path, { ...init, headers, cache: "no-store" });
    } catch (e) {
      if (e && e.name === "AbortError") throw e;
      const err = new Error(`network error: could not reach ${location.host} (${e && e.message ? e.message : e})`);
      err.name = "NetworkError";
      throw err;
    }
    const backend = resp.headers.get("X-Airlock-Backend") || "";
    if (!resp.ok) throw await errorFrom(resp, backend);
    el.apiKey.removeAttribute("aria-invalid");
    return { resp, backend };
  }

  function backendNode(name) {
    // The worker that answered, from the balancer's X-Airlock-Backend header.
    return name ? h("span", { class: "backend" }, name)
      : h("span", { class: "backend missing", title: "the response had no X-Airlock-Backend header" }, "?");
  }

  // ---------------------------------------------------------------- API key

  function applyKey() {
    const value = el.apiKey.value.trim();
    if (value === apiKey()) return;
    storageSet(KEY_STORAGE, value);
    el.apiKey.removeAttribute("aria-invalid");
    clearError();
    loadModels();
  }

  el.apiKey.value = apiKey();
  el.apiKey.addEventListener("change", applyKey);
  el.apiKey.addEventListener("keydown", (ev) => { if (ev.key === "Enter") applyKey(); });
  el.forgetKey.addEventListener("click", () => { el.apiKey.value = ""; applyKey(); el.apiKey.focus(); });

  // ---------------------------------------------------------------- model lists

  let modelLoads = 0;
  let chatListGen = 0;           // a newer load (the key changed meanwhile) wins over an older one
  let asrListGen = 0;

  function fillSelect(select, ids, wanted) {
    select.replaceChildren(...ids.map((id) => h("option", { value: id }, id)));
    if (wanted && ids.includes(wanted)) select.value = wanted;
  }

  async function loadChatModels() {
    const body = document.body;
    const gen = ++chatListGen;
    body.dataset.models = "loading";
    el.modelsStatus.textContent = "Loading models…";
    try {
      const { resp, backend } = await api("/v1/models");
      const j = await resp.json();
      if (gen !== chatListGen) return;
      const ids = (Array.isArray(j.data) ? j.data : []).map((m) => m && m.id).filter(Boolean);
      if (!ids.length) throw new Error("the server lists no models");
      fillSelect(el.model, ids, storageGet(MODEL_STORAGE));
      el.model.disabled = false;
      el.modelsStatus.replaceChildren(
        `${ids.length} model${ids.length === 1 ? "" : "s"} · listed by `, backendNode(backend));
      body.dataset.models = "loaded";
      body.dataset.ready = "1";
    } catch (e) {
      if (gen !== chatListGen) return;
      el.model.replaceChildren(h("option", { value: "" }, "unavailable"));
      el.model.disabled = true;
      el.modelsStatus.textContent = "The model list could not be loaded (see the error above).";
      body.dataset.models = "error";
      delete body.dataset.ready;
      showError("Loading models", e);
    } finally {
      if (gen === chatListGen) body.dataset.modelLoads = String(++modelLoads);
    }
  }

  async function loadAsrModels() {
    // Not fatal: without the list, transcription uses the server's default model. Shown next to the select.
    const status = el.asrModelsStatus;
    const gen = ++asrListGen;
    status.dataset.state = "loading";
    status.classList.remove("warn");
    try {
      const { resp, backend } = await api("/asr/v1/models");
      const j = await resp.json();
      if (gen !== asrListGen) return;
      const ids = (Array.isArray(j.data) ? j.data : []).map((m) => m && m.id).filter(Boolean);
      fillSelect(el.asrModel, ids, el.asrModel.value);
      if (!ids.length) el.asrModel.replaceChildren(h("option", { value: "" }, "server default"));
      status.replaceChildren(`${ids.length} speech model${ids.length === 1 ? "" : "s"} · listed by `,
        backendNode(backend));
      status.dataset.state = "loaded";
    } catch (e) {
      if (gen !== asrListGen) return;
      el.asrModel.replaceChildren(h("option", { value: "" }, "server default"));
      status.textContent = e instanceof ApiError && e.status === 401
        ? "Speech models could not be listed: the API key is missing or wrong."
        : `Speech models could not be listed (${describe(e)}); the server's default is used.`;
      status.classList.add("warn");
      status.dataset.state = "error";
    }
  }

  function loadModels() {
    return Promise.all([loadChatModels(), loadAsrModels()]);
  }

  el.model.addEventListener("change", () => storageSet(MODEL_STORAGE, el.model.value));

  // ---------------------------------------------------------------- chat

  const history = [];            // [{role, content}] sent with every request
  let chatAbort = null;

  function scrollLog() {
    const log = el.chatLog;
    log.scrollTop = log.scrollHeight;
  }

  function clearPlaceholder(container) {
    const p = container.querySelector(":scope > .empty");
    if (p) p.remove();
  }

  function addQuestion(text) {
    clearPlaceholder(el.chatLog);
    el.chatLog.append(h("div", { class: "msg question" }, h("div", { class: "who" }, "You"),
      h("div", { class: "text" }, text)));
  }

  function addAnswer(model) {
    const text = h("div", { class: "text" });
    const meta = h("div", { class: "meta" }, "waiting for an answer…");
    const node = h("div", { class: "msg answer", "data-state": "pending", "aria-busy": "true" },
      h("div", { class: "who" }, model), text, meta);
    el.chatLog.append(node);
    scrollLog();
    let reasoning = null;
    return {
      node,
      setText(t) { text.textContent = t; scrollLog(); },
      setReasoning(t) {
        if (!reasoning) {
          reasoning = h("pre", { class: "reasoning-text" });
          node.insertBefore(h("details", { class: "reasoning" }, h("summary", {}, "reasoning"), reasoning), text);
        }
        reasoning.textContent = t;
      },
      finish(state, backend, parts) {
        node.dataset.state = state;
        node.removeAttribute("aria-busy");
        const by = backend || state === "done" ? ["answered by ", backendNode(backend), " · "] : [];
        meta.replaceChildren(...by, parts.join(" · "));
        scrollLog();
      },
    };
  }

  function setChatBusy(busy) {
    el.send.disabled = busy;
    el.stop.disabled = !busy;
    el.chatForm.setAttribute("aria-busy", busy ? "true" : "false");
  }

  async function readEventStream(resp, onDelta) {
    // OpenAI-style server-sent events: "data: {json}" lines, ended by "data: [DONE]".
    const result = { text: "", reasoning: "", finish: "", usage: null, firstMs: null };
    const handleLine = (line) => {
      if (!line.startsWith("data:")) return;
      const data = line.slice(5).trim();
      if (!data || data === "[DONE]") return;
      const j = JSON.parse(data);
      if (j.error) throw new ApiError(typeof j.error === "string" ? j.error : j.error.message || "stream error", 0, "");
      const choice = (j.choices || [])[0];
      if (choice) {
        const delta = choice.delta || {};
        const piece = delta.content || "";
        const thought = delta.reasoning_content || delta.reasoning || "";
        if ((piece || thought) && result.firstMs === null) result.firstMs = performance.now();
        result.text += piece;
        result.reasoning += thought;
        if (choice.finish_reason) result.finish = choice.finish_reason;
        if (piece || thought) onDelta(result);
      }
      if (j.usage) result.usage = j.usage;
    };
    if (!resp.body || !resp.body.getReader) {          // no streaming reads here: take the whole body
      (await resp.text()).split(/\r?\n/).forEach(handleLine);
      return result;
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = lines.pop();
      lines.forEach(handleLine);
    }
    buffer += decoder.decode();
    if (buffer) handleLine(buffer);
    return result;
  }

  async function requestChat(body, signal, answer) {
    const { resp, backend } = await api("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
    });
    answer.node.dataset.backend = backend;
    const type = resp.headers.get("Content-Type") || "";
    if (body.stream && type.includes("text/event-stream")) {
      answer.node.dataset.state = "streaming";
      const result = await readEventStream(resp, (r) => {
        answer.setText(r.text);
        if (r.reasoning) answer.setReasoning(r.reasoning);
      });
      return { ...result, backend, streamed: true };
    }
    const j = await resp.json();                      // non-streaming answer (asked for, or the server chose)
    const choice = (j.choices || [])[0] || {};
    const message = choice.message || {};
    return {
      text: message.content || "", reasoning: message.reasoning_content || message.reasoning || "",
      finish: choice.finish_reason || "", usage: j.usage || null, firstMs: null, backend, streamed: false,
    };
  }

  async function sendChat(ev) {
    if (ev) ev.preventDefault();
    if (chatAbort) return;
    const text = el.prompt.value.trim();
    if (!text) { el.prompt.focus(); return; }
    const model = el.model.value;
    if (!model) { showError("Chat", new Error("no model to ask: the model list did not load")); return; }
    const maxTokens = Number(el.maxTokens.value);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      showError("Chat", new Error("max tokens must be a whole number of at least 1"));
      el.maxTokens.focus();
      return;
    }
    clearError();
    addQuestion(text);
    history.push({ role: "user", content: text });
    el.prompt.value = "";
    const answer = addAnswer(model);
    const started = performance.now();
    chatAbort = new AbortController();
    setChatBusy(true);
    const body = { model, messages: history.slice(), max_tokens: maxTokens, stream: el.stream.checked };
    if (body.stream) body.stream_options = { include_usage: true };   // the token count comes in the last event
    let partial = "";
    try {
      let result;
      try {
        result = await requestChat(body, chatAbort.signal, {
          node: answer.node,
          setText: (t) => { partial = t; answer.setText(t); },
          setReasoning: answer.setReasoning,
        });
      } catch (e) {
        // A server that refuses streaming (400/422/501 naming "stream"): ask again without it.
        if (!(body.stream && e instanceof ApiError && [400, 422, 501].includes(e.status) && /stream/i.test(e.message))) {
          throw e;
        }
        result = await requestChat({ ...body, stream: false, stream_options: undefined }, chatAbort.signal, answer);
      }
      answer.setText(result.text);
      if (result.reasoning) answer.setReasoning(result.reasoning);
      history.push({ role: "assistant", content: result.text });
      const parts = [seconds(performance.now() - started)];
      if (result.firstMs !== null) parts.push(`first token ${seconds(result.firstMs - started)}`);
      if (result.usage && result.usage.completion_tokens !== undefined) parts.push(`${result.usage.completion_tokens} tokens`);
      if (result.finish === "length") parts.push("cut at max tokens");
      if (!result.streamed && body.stream) parts.push("not streamed");
      answer.finish("done", result.backend, parts);
    } catch (e) {
      const elapsed = seconds(performance.now() - started);
      if (e && e.name === "AbortError") {
        if (partial) history.push({ role: "assistant", content: partial });
        else history.pop();
        answer.finish("stopped", answer.node.dataset.backend || "", ["stopped after " + elapsed]);
      } else {
        history.pop();                                  // the question goes back to the box to try again
        if (!el.prompt.value) el.prompt.value = text;
        answer.setText("");
        answer.finish("error", e instanceof ApiError ? e.backend : "", [`failed after ${elapsed}: ${describe(e, false)}`]);
        showError("Chat", e);
      }
    } finally {
      chatAbort = null;
      setChatBusy(false);
    }
  }

  el.chatForm.addEventListener("submit", sendChat);
  el.prompt.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) sendChat(ev);
  });
  el.stop.addEventListener("click", () => { if (chatAbort) chatAbort.abort(); });
  el.newChat.addEventListener("click", () => {
    if (chatAbort) chatAbort.abort();
    history.length = 0;
    el.chatLog.replaceChildren(h("p", { class: "empty" }, "No messages yet."));
    el.prompt.focus();
  });

  // ---------------------------------------------------------------- audio: resampling and WAV

  // Band-limited resampling (Blackman-windowed sinc, 512 phases): good enough for speech, no aliasing.
  function resample(x, inRate, outRate) {
    if (inRate === outRate) return x;
    const ratio = inRate / outRate;
    const cutoff = Math.min(1, 1 / ratio) * 0.95;     // of the input's Nyquist frequency
    const half = Math.ceil(12 / cutoff);               // 12 zero crossings each side
    const taps = 2 * half;
    const phases = 512;
    const table = new Float32Array((phases + 1) * taps);
    for (let p = 0; p <= phases; p++) {
      let sum = 0;
      for (let j = 0; j < taps; j++) {
        const d = j - half + 1 - p / phases;
        let v = 0;
        if (Math.abs(d) < half) {
          const s = d === 0 ? 1 : Math.sin(Math.PI * cutoff * d) / (Math.PI * cutoff * d);
          v = s * (0.42 + 0.5 * Math.cos(Math.PI * d / half) + 0.08 * Math.cos(2 * Math.PI * d / half));
        }
        table[p * taps + j] = v;
        sum += v;
      }
      for (let j = 0; j < taps; j++) table[p * taps + j] /= sum;
    }
    const out = new Float32Array(Math.floor(x.length / ratio));
    for (let i = 0; i < out.length; i++) {
      const t = i * ratio;
      const k0 = Math.floor(t);
      const row = Math.round((t - k0) * phases) * taps;
      const start = k0 - half + 1;
      let acc = 0;
      for (let j = Math.max(0, -start), end = Math.min(taps, x.length - start); j < end; j++) {
        acc += x[start + j] * table[row + j];
      }
      out[i] = acc;
    }
    return out;
  }

  function encodeWav(samples, rate) {
    // 16-bit PCM, mono, little-endian RIFF/WAVE.
    const buffer = new ArrayBuffer(44 + samples.length * 2);
    const v = new DataView(buffer);
    const ascii = (at, s) => { for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i)); };
    ascii(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); ascii(8, "WAVE");
    ascii(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    ascii(36, "data"); v.setUint32(40, samples.length * 2, true);
    for (let i = 0, at = 44; i < samples.length; i++, at += 2) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      v.setInt16(at, s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff), true);
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  async function fileToWav(file) {
    // For formats the server cannot read (m4a, webm, aac...): the browser decodes, we send 16 kHz mono WAV.
    const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    if (!Offline) throw new Error("this browser cannot convert audio; upload WAV, FLAC, OGG or MP3");
    const data = await file.arrayBuffer();
    let audio;
    try {
      audio = await new Offline(1, 1, ASR_RATE).decodeAudioData(data);
    } catch {
      throw new Error(`this browser cannot decode ${file.name}; upload WAV, FLAC, OGG or MP3`);
    }
    const mono = new Float32Array(audio.length);
    for (let c = 0; c < audio.numberOfChannels; c++) {
      const ch = audio.getChannelData(c);
      for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / audio.numberOfChannels;
    }
    return encodeWav(resample(mono, audio.sampleRate, ASR_RATE), ASR_RATE);
  }

  // ---------------------------------------------------------------- transcription

  let transcriptions = 0;
  let asrBusy = false;

  function setAsrBusy(busy) {
    asrBusy = busy;
    el.transcribe.disabled = busy;
    if (!recording) el.record.disabled = busy || !micSupported();
    el.transcript.setAttribute("aria-busy", busy ? "true" : "false");
  }

  async function transcribe(blob, filename, source, note) {
    clearError();
    setAsrBusy(true);
    const t = el.transcript;
    t.dataset.state = "pending";
    t.dataset.source = source;
    t.replaceChildren(h("p", { class: "status" }, `Transcribing ${note}…`));
    const form = new FormData();
    form.append("file", blob, filename);
    if (el.asrModel.value) form.append("model", el.asrModel.value);
    form.append("language", el.language.value);
    form.append("response_format", "json");
    const started = performance.now();
    try {
      const { resp, backend } = await api("/v1/audio/transcriptions", { method: "POST", body: form });
      const j = await resp.json();
      const text = typeof j.text === "string" ? j.text.trim() : "";
      t.replaceChildren(
        h("p", { class: "text" }, text),
        h("p", { class: "meta" }, "answered by ", backendNode(backend),
          ` · ${seconds(performance.now() - started)} · ${note}`));
      t.dataset.state = "done";
    } catch (e) {
      t.replaceChildren(h("p", { class: "meta failed" }, `Transcription of ${note} failed.`));
      t.dataset.state = "error";
      showError("Transcription", e);
    } finally {
      t.dataset.seq = String(++transcriptions);
      setAsrBusy(false);
    }
  }

  el.uploadForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (asrBusy) return;
    const file = el.audioFile.files && el.audioFile.files[0];
    if (!file) { showError("Transcription", new Error("choose an audio file first")); el.audioFile.focus(); return; }
    if (!file.size) { showError("Transcription", new Error(`${file.name} is empty`)); return; }
    const size = file.size >= 1048576 ? (file.size / 1048576).toFixed(1) + " MB" : Math.ceil(file.size / 1024) + " kB";
    let blob = file;
    let name = file.name;
    if (!SERVER_FORMATS.test(file.name)) {
      clearError();
      el.transcript.replaceChildren(h("p", { class: "status" }, `Converting ${file.name} to WAV…`));
      try {
        blob = await fileToWav(file);
      } catch (e) {
        el.transcript.replaceChildren(h("p", { class: "meta failed" }, `${file.name} could not be converted.`));
        showError("Converting audio", e);
        return;
      }
      name = file.name.replace(/\.[^.]*$/, "") + ".wav";
    }
    await transcribe(blob, name, "file", `${file.name} (${size})`);
  });

  // ---------------------------------------------------------------- recording

  // The capture runs in an AudioWorklet (made from this string: no extra file), or a ScriptProcessor where
  // worklets are missing. The graph downmixes to mono; resampling to 16 kHz happens when the recording stops.
  const WORKLET = `registerProcessor("airlock-capture", class extends AudioWorkletProcessor {
    process(inputs) { const ch = inputs[0] && inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
  });`;

  let recording = null;

  const micSupported = () => Boolean(window.isSecureContext && navigator.mediaDevices &&
    navigator.mediaDevices.getUserMedia && (window.AudioContext || window.webkitAudioContext));

  function setRecordButton(on) {
    el.record.setAttribute("aria-pressed", on ? "true" : "false");
    el.record.classList.toggle("recording", on);
    el.record.querySelector(".label").textContent = on ? "Stop" : "Record";
  }

  async function startRecording() {
    if (!micSupported()) {
      showError("Recording", new Error(window.isSecureContext
        ? "this browser gives no access to a microphone"
        : `browsers allow the microphone only on HTTPS or localhost pages, and this page came over plain HTTP from ${location.host}. Upload a file instead, or ask the operator for HTTPS.`));
      return;
    }
    clearError();
    el.record.disabled = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: true },
      });
    } catch (e) {
      el.record.disabled = false;
      const why = e && e.name === "NotAllowedError" ? "permission to use the microphone was refused"
        : e && e.name === "NotFoundError" ? "no microphone was found" : describe(e);
      showError("Recording", new Error(why));
      return;
    }
    const Ctx = window.AudioContext || window.webkitAudioContext;
    const ctx = new Ctx();
    const rec = { ctx, stream, chunks: [], length: 0, level: 0, started: performance.now(), stopping: false };
    const take = (samples) => {
      if (rec.stopping) return;
      rec.chunks.push(samples);
      rec.length += samples.length;
      let peak = 0;
      for (let i = 0; i < samples.length; i++) peak = Math.max(peak, Math.abs(samples[i]));
      rec.level = Math.max(peak, rec.level * 0.9);
    };
    try {
      if (ctx.state === "suspended") await ctx.resume();
      const source = ctx.createMediaStreamSource(stream);
      const sink = ctx.createGain();
      sink.gain.value = 0;                            // nodes must reach the destination to run; silently
      sink.connect(ctx.destination);
      let node = null;
      if (ctx.audioWorklet && window.AudioWorkletNode) {
        const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
        try {
          await ctx.audioWorklet.addModule(url);
          node = new AudioWorkletNode(ctx, "airlock-capture",
            { channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers" });
          node.port.onmessage = (m) => take(m.data);
        } catch (e) {
          console.warn("AudioWorklet unavailable, using ScriptProcessor", e);
          node = null;
        } finally {
          URL.revokeObjectURL(url);
        }
      }
      if (!node) {
        node = ctx.createScriptProcessor(4096, 1, 1);
        node.onaudioprocess = (e) => take(new Float32Array(e.inputBuffer.getChannelData(0)));
      }
      source.connect(node);
      node.connect(sink);
      rec.nodes = [source, node, sink];
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      ctx.close();
      el.record.disabled = false;
      showError("Recording", e);
      return;
    }
    recording = rec;
    stream.getAudioTracks().forEach((t) => t.addEventListener("ended", () => { if (recording === rec) stopRecording(); }));
    setRecordButton(true);
    el.record.disabled = false;
    const level = h("span", { class: "level", "aria-hidden": "true" }, h("span", { class: "bar" }));
    const label = h("span", {}, "Recording…");
    el.recordStatus.replaceChildren(level, label);
    rec.timer = setInterval(() => {
      const s = (performance.now() - rec.started) / 1000;
      label.textContent = `Recording… ${s.toFixed(1)} s`;
      level.firstChild.style.width = Math.min(100, Math.round(rec.level * 140)) + "%";
      if (s >= MAX_RECORD_S) stopRecording();
    }, 100);
  }

  async function stopRecording() {
    const rec = recording;
    if (!rec) return;
    recording = null;
    rec.stopping = true;
    clearInterval(rec.timer);
    setRecordButton(false);
    (rec.nodes || []).forEach((n) => n.disconnect());
    rec.stream.getTracks().forEach((t) => t.stop());
    const rate = rec.ctx.sampleRate;
    rec.ctx.close().catch(() => {});
    el.recordStatus.textContent = "";
    if (!rec.length) {
      showError("Recording", new Error("no sound was captured from the microphone"));
      setAsrBusy(false);
      return;
    }
    const all = new Float32Array(rec.length);
    let at = 0;
    for (const c of rec.chunks) { all.set(c, at); at += c.length; }
    const wav = encodeWav(resample(all, rate, ASR_RATE), ASR_RATE);
    if (el.playback.src) URL.revokeObjectURL(el.playback.src);
    el.playback.src = URL.createObjectURL(wav);
    el.playback.hidden = false;
    const secs = (rec.length / rate).toFixed(1);
    el.recordStatus.textContent = `Recorded ${secs} s, sent as ${ASR_RATE / 1000} kHz WAV (${Math.ceil(wav.size / 1024)} kB).`;
    await transcribe(wav, "recording.wav", "microphone", `a ${secs} s recording`);
  }

  el.record.addEventListener("click", () => {
    if (recording) stopRecording(); else if (!asrBusy) startRecording();
  });

  if (!micSupported()) {
    el.record.disabled = true;
    el.recordStatus.textContent = window.isSecureContext ? "This browser gives no access to a microphone."
      : "Recording needs HTTPS (or localhost): this page came over plain HTTP. Upload a file instead.";
  }

  // ---------------------------------------------------------------- start

  loadModels();
})();
