// seuss launcher for nodejs:20: the OpenWhisk action contract over the actionloop
// protocol (runtimes/doc.go describes the wire format).
//
// fd 0: one JSON line per request (init or run); fd 3: one reply line per request;
// fd 1 and 2: the action's logs, buffered and written once per activation, each
// followed by the sentinel after every run and after a failed init; a run still going
// after LATE_MS writes them through from then on (see late).
//
// Between requests the launcher is blocked in read(0): those are the snapshot points
// ("ready, awaiting init" and "initialised, awaiting run"). An init line carrying
// "warmup": true is a dummy activation: after the run that follows it the launcher
// forgets the action and is again awaiting its first init.
//
// Behaviour and message texts follow openwhisk-runtime-nodejs (core/nodejsActionBase:
// src/service.js, runner.js); this is an independent implementation.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { Writable } = require('stream');

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n';
const REPLY_FD = 3;
// Logs are flushed at the end of each activation, or earlier once this many bytes are
// pending, so a chatty action costs one write per 64 KiB, not one per line.
const FLUSH_AT = 64 << 10;

// ---- logs: one write per flush ---------------------------------------------------

const pending = { 1: [], 2: [] };
const pendingBytes = { 1: 0, 2: 0 };

function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN' && e.code !== 'EINTR') throw e;
    }
  }
}

// A run still going after LATE_MS has its logs written out then, and each later line as
// it comes (write-through), so that an action killed at its time limit while awaiting
// (a promise that never settles, a long await: the event loop runs) keeps the lines it
// printed, as with the stock runtime. Arming and clearing the timer makes no system call
// (libuv keeps timers in user space); it can fire only where the event loop waits, so a
// synchronous infinite loop keeps its lines buffered and loses them when it is killed.
const LATE_MS = 100;
let writeThrough = false;
let lateTimer = null;

function late() {
  lateTimer = null;
  writeThrough = true;
  flush(1);
  flush(2);
}

// endsLine[fd] is false while the stream's last byte out is not a line end.
const endsLine = { 1: true, 2: true };

function flush(fd, tail) {
  if (tail !== undefined) {
    // The sentinel must be a line of its own, even after a partial line.
    const b = Buffer.from(endsLine[fd] ? tail : '\n' + tail);
    pending[fd].push(b);
    pendingBytes[fd] += b.length;
  }
  if (pendingBytes[fd] === 0) return;
  const buf = pending[fd].length === 1 ? pending[fd][0] : Buffer.concat(pending[fd], pendingBytes[fd]);
  endsLine[fd] = buf[buf.length - 1] === 10;
  pending[fd] = [];
  pendingBytes[fd] = 0;
  writeAll(fd, buf);
}

// logStream replaces process.stdout/stderr before anything touches them, so libuv never
// wraps fds 1 and 2 (which would make them non-blocking) and every line is buffered.
function logStream(fd) {
  const s = new Writable({
    write(chunk, encoding, cb) {
      pending[fd].push(chunk);
      pendingBytes[fd] += chunk.length;
      if (writeThrough || pendingBytes[fd] >= FLUSH_AT) flush(fd);
      cb();
    },
  });
  s.fd = fd;
  s.isTTY = false;
  s.columns = 80;
  return s;
}

const stdout = logStream(1);
const stderr = logStream(2);
Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => stdout });
Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: () => stderr });
// The global console binds process.stdout/stderr lazily, on first use: it writes here.
process.on('exit', () => {
  flush(1);
  flush(2);
});

// ---- requests and replies --------------------------------------------------------

let carry = Buffer.alloc(0);
const chunk = Buffer.allocUnsafe(1 << 20);

// readLine blocks in read(0) until a whole line is there; null at end of input.
function readLine() {
  let parts = carry.length ? [carry] : [];
  let total = carry.length;
  let nl = carry.indexOf(10);
  while (nl < 0) {
    let n;
    try {
      n = fs.readSync(0, chunk, 0, chunk.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      throw e;
    }
    if (n === 0) return null;
    const piece = Buffer.from(chunk.subarray(0, n));
    const idx = piece.indexOf(10);
    if (idx >= 0) nl = total + idx;
    parts.push(piece);
    total += n;
  }
  const all = parts.length === 1 ? parts[0] : Buffer.concat(parts, total);
  carry = all.subarray(nl + 1);
  return all.toString('utf8', 0, nl);
}

// reply writes the logs (and the sentinels when an activation ended), then the answer.
// A 200 answer is the bare JSON; any other status is "!<status> <json>".
function reply(status, body, sentinels) {
  if (lateTimer !== null) {
    clearTimeout(lateTimer);
    lateTimer = null;
  }
  writeThrough = false;
  if (sentinels) {
    flush(1, SENTINEL);
    flush(2, SENTINEL);
  } else {
    flush(1);
    flush(2);
  }
  let text;
  try {
    text = JSON.stringify(body);
  } catch (e) {
    status = 502;
    text = JSON.stringify({ error: 'An error has occurred: ' + e });
  }
  if (text === undefined) text = '{}';
  writeAll(REPLY_FD, Buffer.from(status === 200 ? text + '\n' : '!' + status + ' ' + text + '\n'));
}

// ---- action loading --------------------------------------------------------------

function safeJoin(dir, name) {
  const p = path.resolve(dir, name);
  if (p !== dir && !p.startsWith(dir + path.sep)) throw new Error('archive entry escapes the action directory: ' + name);
  return p;
}

function writeEntry(dir, name, data, mode) {
  const p = safeJoin(dir, name);
  if (name.endsWith('/')) {
    fs.mkdirSync(p, { recursive: true });
    return;
  }
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data, { mode: mode || 0o644 });
}

function unzip(buf, dir) {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('zip: no end of central directory');
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error('zip: bad central directory');
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const attrs = buf.readUInt32LE(p + 38);
    const local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (csize === 0xffffffff || local === 0xffffffff) throw new Error('zip: zip64 archives are not supported');
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + csize);
    let data;
    if (name.endsWith('/')) data = null;
    else if (method === 0) data = raw;
    else if (method === 8) data = require('zlib').inflateRawSync(raw);
    else throw new Error('zip: unsupported compression method ' + method + ' for ' + name);
    const mode = (attrs >>> 16) & 0o777;
    writeEntry(dir, name, data, mode);
  }
}

function untgz(buf, dir) {
  const tar = require('zlib').gunzipSync(buf);
  let longName = null;
  for (let p = 0; p + 512 <= tar.length; ) {
    const hdr = tar.subarray(p, p + 512);
    if (hdr.every((b) => b === 0)) break;
    const field = (o, l) => {
      const s = hdr.toString('utf8', o, o + l);
      const z = s.indexOf('\0');
      return z >= 0 ? s.slice(0, z) : s;
    };
    let name = field(0, 100);
    const prefix = field(345, 155);
    if (prefix) name = prefix + '/' + name;
    if (longName !== null) {
      name = longName;
      longName = null;
    }
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const mode = parseInt(field(100, 8).trim() || '644', 8) & 0o777;
    const type = String.fromCharCode(hdr[156] || 48);
    const data = tar.subarray(p + 512, p + 512 + size);
    p += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') longName = data.toString('utf8').replace(/\0+$/, '');
    else if (type === '5') writeEntry(dir, name.endsWith('/') ? name : name + '/', null, 0);
    else if (type === '0' || type === '7') writeEntry(dir, name, data, mode);
  }
}

// splitMain: "fn" names a function of the package; "path/file.fn" one of a file.
function splitMain(main) {
  const m = main.match(/^([^.]+)$|^(.+)\.([^.]+)$/);
  if (!m) return undefined;
  return [m[2], m[3] || m[1]];
}

function assertFunction(handler, name) {
  if (typeof handler !== 'function') throw "Action entrypoint '" + name + "' is not a function.";
  return handler;
}

let actionDir = null;

function loadArchive(value) {
  const head = Buffer.from(value.code.slice(0, 8), 'base64').toString('hex');
  let extract;
  if (head.startsWith('504b0304')) extract = unzip;
  else if (head.startsWith('1f8b0808') || head.startsWith('1f8b0800')) extract = untgz;
  else throw 'There was an error uncompressing the action archive. The file type is unsupported.';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'action-'));
  actionDir = dir;
  extract(Buffer.from(value.code, 'base64'), dir);
  const parts = splitMain(value.main);
  if (parts === undefined) throw 'Name of main function is not valid.';
  const [index, main] = parts;
  process.chdir(dir);
  if (index === undefined && !fs.existsSync('package.json') && !fs.existsSync('index.js')) {
    throw 'Zipped actions must contain either package.json or index.js at the root.';
  }
  const mod = require(index !== undefined ? path.join(dir, index) : dir);
  return assertFunction(mod[main], value.main);
}

function loadInline(value) {
  // The code runs as the body of a function, as the stock runtime's eval does; `module`
  // and `exports` are fresh per init so that one action never sees another's.
  const module = { exports: {} };
  const body =
    value.code +
    '\ntry { return ' + value.main + ' } catch (e) {' +
    " if (e.name === 'ReferenceError') { return module.exports." + value.main + ' || exports.' + value.main + ' }' +
    ' else throw e }';
  const fn = new Function('module', 'exports', 'require', '__filename', '__dirname', body);
  return assertFunction(fn(module, module.exports, require, path.join(process.cwd(), 'action.js'), process.cwd()), value.main);
}

// ---- the action contract ---------------------------------------------------------

const baseEnv = Object.assign({}, process.env);
const baseCwd = process.cwd();
const baseModules = new Set(Object.keys(require.cache));

let state = 'ready'; // ready | stopped
let handler = null;
let warming = false;

function pristine() {
  for (const k of Object.keys(process.env)) if (!(k in baseEnv)) delete process.env[k];
  Object.assign(process.env, baseEnv);
  process.chdir(baseCwd);
  for (const k of Object.keys(require.cache)) if (!baseModules.has(k)) delete require.cache[k];
  if (actionDir) fs.rmSync(actionDir, { recursive: true, force: true });
  actionDir = null;
  handler = null;
  state = 'ready';
  warming = false;
}

function doInit(value, warmup) {
  if (handler !== null) {
    console.error('Internal system error:', 'Cannot initialize the action more than once.');
    return reply(403, { error: 'Cannot initialize the action more than once.' }, false);
  }
  if (state !== 'ready') return reply(502, { error: 'System not ready, status is ' + state + '.' }, false);
  if (!(value && typeof value.main === 'string' && value.main && typeof value.code === 'string' && value.code)) {
    return reply(403, { error: 'Missing main/no code to execute.' }, false);
  }
  if (value.env && typeof value.env === 'object') {
    for (const k of Object.keys(value.env)) {
      const v = value.env[k];
      process.env[k] = typeof v !== 'object' || v === null ? (v ? v.toString() : '') : JSON.stringify(v);
    }
  }
  try {
    handler = value.binary ? loadArchive(value) : loadInline(value);
  } catch (error) {
    handler = null;
    const msg = 'Initialization has failed due to: ' + (error && error.stack ? String(error.stack) : error);
    if (warmup) pristine();
    else state = 'stopped';
    return reply(502, { error: msg }, true);
  }
  warming = !!warmup;
  return reply(200, { OK: true }, false);
}

function serializeError(value) {
  if (typeof value === 'function') return '[Function: ' + (value.name || 'anonymous') + ']';
  if (typeof value !== 'object' || value === null) return value;
  const copy = (from, seen) => {
    const to = Array.isArray(from) ? [] : {};
    seen = seen.concat([from]);
    for (const k of Object.keys(from)) {
      const v = from[k];
      if (typeof v === 'function') continue;
      if (!v || typeof v !== 'object') to[k] = v;
      else if (seen.includes(v)) to[k] = '[Circular]';
      else to[k] = copy(v, seen);
    }
    for (const k of ['name', 'message', 'stack', 'code']) if (typeof from[k] === 'string') to[k] = from[k];
    return to;
  };
  return copy(value, []);
}

function callMain(args) {
  return new Promise((resolve, reject) => {
    let result;
    try {
      result = handler(args);
    } catch (e) {
      reject(e);
      return;
    }
    Promise.resolve(result).then(
      (r) => resolve(r === undefined ? {} : r),
      (err) => resolve({ error: err ? serializeError(err) : {} }),
    );
  });
}

async function doRun(msg) {
  if (state !== 'ready') return reply(403, { error: 'System not ready, status is ' + state + '.' }, true);
  if (handler === null) return reply(403, { error: 'System not initialized.' }, true);
  for (const k of Object.keys(msg)) {
    if (k !== 'value' && typeof msg[k] === 'string') process.env['__OW_' + k.toUpperCase()] = msg[k];
  }
  let status = 200;
  let body;
  // Unreferenced: the timer does not keep a launcher alive that would otherwise end.
  lateTimer = setTimeout(late, LATE_MS).unref();
  try {
    const result = await callMain(msg.value === undefined ? {} : msg.value);
    if (typeof result !== 'object') {
      status = 502;
      body = { error: 'The action did not return a dictionary.' };
    } else body = result;
  } catch (error) {
    status = 502;
    body = { error: 'An error has occurred: ' + error };
    if (!warming) state = 'stopped';
  }
  reply(status, body, true);
  if (warming) pristine();
}

function isInit(msg) {
  for (const k of Object.keys(msg)) if (k !== 'value' && k !== 'warmup') return false;
  return true;
}

async function loop() {
  for (;;) {
    const line = readLine();
    if (line === null) return;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      msg = null;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      reply(500, { error: 'Bad request.' }, false);
      continue;
    }
    if (isInit(msg)) doInit(msg.value, msg.warmup === true);
    else await doRun(msg);
  }
}

loop().then(
  () => process.exit(0),
  (e) => {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(1);
  },
);
