// Load generator for benchmarks/intake: complete ISPWS cycles (submit, upload, fileinfo, finish).
//
// Node 20 built-ins only (node:http with a keep-alive agent; no packages). Usage:
//   node client.mjs CONFIG.json
// CONFIG: {base, user, password, concurrency, warmup, seconds, report, image, fileinfo}
//   report / image: paths of the submit body and of the stand-in PNG (which ends in a tEXt
//   chunk "bench" + 32 hex chars + CRC + IEND that every cycle rewrites, so every upload is
//   new content, as real uploads are); fileinfo: a template with {rid} and {fid}.
// Output on stdout, one JSON object a line: {"event":"measure"} when the measured window
// opens, {"event":"tick",...} every 5 s, {"event":"stop"} when it closes, then
// {"event":"done",...} with the counts, latencies (ms) and the client's own CPU time.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { crc32 } from "node:zlib";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const base = new URL(cfg.base);
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.concurrency, maxFreeSockets: cfg.concurrency });
const auth = "Basic " + Buffer.from(`${cfg.user}:${cfg.password}`).toString("base64");
const reportBody = readFileSync(cfg.report);
const image = readFileSync(cfg.image);
const fileinfoTemplate = cfg.fileinfo;

// The image's last 12 + 4 + 5 + 1 + 32 + 4 bytes: IEND chunk, preceded by our tEXt chunk.
const IEND_LEN = 12;
const TEXT_DATA = 6 + 32; // "bench\0" + 32 hex chars
const textStart = image.length - IEND_LEN - (12 + TEXT_DATA);
const imageHead = image.subarray(0, textStart);
const imageTail = image.subarray(image.length - IEND_LEN);
const textType = Buffer.from("tEXt");
let uniq = 0;
const salt = process.pid.toString(16).padStart(8, "0") + Date.now().toString(16).slice(-8);

function uniqueTextChunk() {
  uniq += 1;
  const data = Buffer.from("bench\0" + salt + uniq.toString(16).padStart(16, "0"), "latin1");
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  textType.copy(chunk, 4);
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  return chunk;
}

const BOUNDARY = "----tiplinebench7MA4YWxkTrZu0gW";

function request(path, contentType, pieces) {
  let length = 0;
  for (const p of pieces) length += p.length;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: base.hostname, port: base.port, path: base.pathname.replace(/\/$/, "") + path,
        method: "POST", agent,
        headers: { Authorization: auth, "Content-Type": contentType, "Content-Length": length },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    for (const p of pieces) req.write(p);
    req.end();
  });
}

const TAGS = Object.fromEntries(
  ["responseCode", "reportId", "fileId", "hash"].map((n) => [n, new RegExp(`<${n}>([^<]*)</${n}>`)]),
);
const tag = (body, name) => {
  const m = TAGS[name].exec(body);
  return m ? m[1] : null;
};

class Failure extends Error {
  constructor(step, why) {
    super(`${step}: ${why}`);
    this.step = step;
  }
}

function check(step, res) {
  if (res.status !== 200) throw new Failure(step, `HTTP ${res.status}`);
  const code = tag(res.body, "responseCode");
  if (code !== "0") throw new Failure(step, `responseCode ${code}`);
}

const STEPS = ["submit", "upload", "fileinfo", "finish"];
let measuring = false;
let stopping = false;
const cycleLat = [];
const stepLat = Object.fromEntries(STEPS.map((s) => [s, []]));
const failures = {};
const failureSamples = [];
let cycles = 0;
let startedInWindow = 0;

async function timed(step, fn) {
  const t = performance.now();
  const res = await fn();
  if (measuring) stepLat[step].push(performance.now() - t);
  check(step, res);
  return res;
}

async function cycle() {
  const t0 = performance.now();
  let res = await timed("submit", () => request("/submit", "text/xml; charset=utf-8", [reportBody]));
  const rid = tag(res.body, "reportId");
  if (!rid) throw new Failure("submit", "no reportId");

  const text = uniqueTextChunk();
  const md5 = createHash("md5").update(imageHead).update(text).update(imageTail).digest("hex");
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="id"\r\n\r\n${rid}\r\n` +
      `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="standin.png"\r\n` +
      `Content-Type: image/png\r\n\r\n`,
  );
  const foot = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  res = await timed("upload", () =>
    request("/upload", `multipart/form-data; boundary=${BOUNDARY}`, [head, imageHead, text, imageTail, foot]));
  const fid = tag(res.body, "fileId");
  if (!fid) throw new Failure("upload", "no fileId");
  if (tag(res.body, "hash") !== md5) throw new Failure("upload", "wrong hash");
  if (tag(res.body, "reportId") !== rid) throw new Failure("upload", "wrong reportId");

  const info = Buffer.from(fileinfoTemplate.replace("{rid}", rid).replace("{fid}", fid));
  res = await timed("fileinfo", () => request("/fileinfo", "text/xml; charset=utf-8", [info]));
  if (tag(res.body, "fileId") !== fid) throw new Failure("fileinfo", "wrong fileId");

  res = await timed("finish", () =>
    request("/finish", "application/x-www-form-urlencoded", [Buffer.from(`id=${rid}`)]));
  if (tag(res.body, "reportId") !== rid) throw new Failure("finish", "wrong reportId");
  if (!res.body.includes(`<files><fileId>${fid}</fileId></files>`)) throw new Failure("finish", "file not listed");
  return performance.now() - t0;
}

async function user() {
  while (!stopping) {
    const inWindowAtStart = measuring;
    if (inWindowAtStart) startedInWindow += 1;
    try {
      const ms = await cycle();
      if (measuring) {
        cycles += 1;
        cycleLat.push(ms);
      }
    } catch (err) {
      if (measuring) {
        const step = err.step ?? "network";
        failures[step] = (failures[step] ?? 0) + 1;
        if (failureSamples.length < 10) failureSamples.push(String(err.message ?? err));
      }
    }
  }
}

function summary(values) {
  const s = Float64Array.from(values).sort();
  const at = (p) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] : null);
  let sum = 0;
  for (const v of s) sum += v;
  return { n: s.length, p50: at(50), p90: at(90), p95: at(95), p99: at(99), mean: s.length ? sum / s.length : null,
    max: s.length ? s[s.length - 1] : null };
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const users = Array.from({ length: cfg.concurrency }, () => user());
await new Promise((r) => setTimeout(r, cfg.warmup * 1000));
measuring = true;
const cpu0 = process.cpuUsage();
const w0 = performance.now();
emit({ event: "measure" });
const ticker = setInterval(() => emit({ event: "tick", elapsed: (performance.now() - w0) / 1000, cycles }), 5000);
await new Promise((r) => setTimeout(r, cfg.seconds * 1000));
measuring = false;
const window = (performance.now() - w0) / 1000;
const cpu = process.cpuUsage(cpu0);
clearInterval(ticker);
emit({ event: "stop" });
stopping = true;
await Promise.all(users);
agent.destroy();
emit({
  event: "done",
  client: "node",
  window_s: window,
  cycles,
  cycles_started: startedInWindow,
  failures,
  failure_samples: failureSamples,
  cycle_ms: summary(cycleLat),
  step_ms: Object.fromEntries(STEPS.map((s) => [s, summary(stepLat[s])])),
  client_cpu_s: (cpu.user + cpu.system) / 1e6,
});
