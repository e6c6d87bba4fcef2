// websocksy demo: connect to an endpoint, send text or binary, show replies with type and latency.
"use strict";
const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
$("url").value = `${scheme}//${location.host || "localhost:8001"}/echo`;

let socket = null;
let sentAt = [];

function log(kind, text) {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  $("log").appendChild(line);
  $("log").scrollTop = $("log").scrollHeight;
}

function setOpen(open) {
  $("state").textContent = open ? "open" : "closed";
  $("connect").disabled = open;
  for (const id of ["disconnect", "send-text", "send-binary"]) $(id).disabled = !open;
}

function connect(url) {
  return new Promise((resolve, reject) => {
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    log("note", `connecting to ${url}`);
    socket.onopen = () => { setOpen(true); log("note", "open"); resolve(); };
    socket.onerror = () => { log("note", "error"); reject(new Error("connection failed")); };
    socket.onclose = (e) => { setOpen(false); log("note", `closed (code ${e.code}${e.reason ? ", " + e.reason : ""})`); };
    socket.onmessage = (e) => {
      const ms = sentAt.length ? (performance.now() - sentAt.shift()).toFixed(1) + " ms" : "unsolicited";
      if (typeof e.data === "string") {
        log("in", `text   ${JSON.stringify(e.data)}  (${ms})`);
      } else {
        const bytes = new Uint8Array(e.data);
        log("in", `binary ${bytes.length} bytes: ${Array.from(bytes.slice(0, 24), (b) => b.toString(16).padStart(2, "0")).join(" ")}  (${ms})`);
      }
      if (socket.onreply) socket.onreply(e.data);
    };
  });
}

function send(asBinary) {
  const text = $("message").value + ($("newline").checked ? "\n" : "");
  const data = asBinary ? new TextEncoder().encode(text) : text;
  sentAt.push(performance.now());
  socket.send(data);
  log("out", `${asBinary ? "binary" : "text  "} ${asBinary ? data.length + " bytes" : JSON.stringify(text)}`);
}

$("connect").onclick = () => connect($("url").value).catch(() => {});
$("url").addEventListener("input", () => { $("newline").checked = $("url").value.endsWith("/lines"); });
$("disconnect").onclick = () => socket && socket.close(1000, "bye");
$("send-text").onclick = () => send(false);
$("send-binary").onclick = () => send(true);
$("message").addEventListener("keydown", (e) => { if (e.key === "Enter" && socket && socket.readyState === 1) send(false); });

// ?auto=1 runs a scripted exchange and writes the replies to #result as JSON (used by the tests).
function nextReply() {
  return new Promise((resolve) => { socket.onreply = (data) => { socket.onreply = null; resolve(data); }; });
}

async function scripted() {
  const base = `${scheme}//${location.host}`;
  const result = {};
  try {
    await connect(`${base}/echo`);
    $("message").value = "ping from the browser";
    let reply = nextReply(); send(false); const text = await reply;
    reply = nextReply(); send(true); const binary = await reply;
    result.echoText = text;
    result.echoBinary = typeof binary === "string" ? "text!" : new TextDecoder().decode(binary);
    // Compression (permessage-deflate) is negotiated by the browser itself: large messages both
    // ways, compressible text and incompressible binary, must come back unchanged.
    result.echoExtensions = socket.extensions;
    const big = JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ seq: i, symbol: "ÄPPL", price: 100 + i % 7 })));
    reply = nextReply(); socket.send(big); const bigReply = await reply;
    const noise = crypto.getRandomValues(new Uint8Array(65536));
    const noise2 = crypto.getRandomValues(new Uint8Array(65536));
    const blob = new Uint8Array(131072); blob.set(noise); blob.set(noise2, 65536);
    reply = nextReply(); socket.send(blob); const blobReply = new Uint8Array(await reply);
    result.bigTextIntact = bigReply === big;
    result.bigBinaryIntact = blobReply.length === blob.length && blobReply.every((b, i) => b === blob[i]);
    socket.close(1000);
    await connect(`${base}/lines`);
    const greeting = await nextReply();
    $("message").value = "hello lines";
    $("newline").checked = true;
    reply = nextReply(); send(false); const answer = await reply;
    result.linesGreeting = typeof greeting === "string" ? greeting : "binary!";
    result.linesAnswer = typeof answer === "string" ? answer : "binary!";
    result.linesExtensions = socket.extensions;
    socket.close(1000);
  } catch (e) {
    result.error = String(e);
  }
  $("result").textContent = JSON.stringify(result);
  $("result").hidden = false;
  document.title = "done";
}

if (new URLSearchParams(location.search).get("auto") === "1") scripted();
