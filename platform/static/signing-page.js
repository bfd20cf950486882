// The Sign box of the signing pages (templates/signing/_sign_box.html): the preview page
// prepares a batch ("prepare"), a batch's result page signs the records still pending
// ("resume"). It talks to the agent only through agent-client.js and to the platform through
// the JSON API of platform/signing/README.md. Every text comes from the page's configuration
// (platform/locales/signpage.toml); the agent's errors bring their own.

import { AgentClient, AgentError, CLIENT_CODES, errorText } from "./agent-client.js";
import { certificateFacts, formatSerial } from "./certificate-facts.js";

const configEl = document.getElementById("kyso-signing-config");
const config = configEl ? JSON.parse(configEl.textContent) : null;
const T = (config && config.texts) || {};
const language = (config && config.language) === "en" ? "en" : "vi";
const numbers = new Intl.NumberFormat(language === "en" ? "en-US" : "vi-VN");
const MESSAGE_KEY = "kyso-signing-message"; // carried to the result page
const POST_TRIES = 4;
const POST_DELAYS = [500, 1500, 3000];
// Errors after which the same attempt (manifest) cannot be sent again.
const SPENT = new Set([
  "MANIFEST_EXPIRED",
  "MANIFEST_REPLAYED",
  "MANIFEST_INVALID",
  "MANIFEST_MISMATCH",
  "CERTIFICATE_NOT_FOUND",
  "CERTIFICATE_UNUSABLE",
  "KEY_MISMATCH",
  "ALGORITHM_UNSUPPORTED",
]);
const INSTALLER_CODES = new Set([
  CLIENT_CODES.AGENT_NOT_RUNNING,
  CLIENT_CODES.AGENT_TOO_OLD,
  "VERSION_UNSUPPORTED",
  "UNKNOWN_TYPE",
]);

const els = {
  button: document.getElementById("sign-button"),
  code: document.getElementById("sign-code"),
  codeValue: document.getElementById("sign-code-value"),
  cancel: document.getElementById("sign-cancel"),
  progress: document.getElementById("sign-progress"),
  bar: document.getElementById("sign-progress-bar"),
  progressText: document.getElementById("sign-progress-text"),
  status: document.getElementById("sign-status"),
  error: document.getElementById("sign-error"),
};

/** A problem the page explains itself (its text is ready to show). */
class PageError extends Error {}

/** The platform refused or could not be reached. */
class ApiError extends Error {
  constructor(text, { status = 0, key = null, retryable = false } = {}) {
    super(text);
    this.status = status;
    this.key = key;
    this.retryable = retryable;
  }
}

function fill(key, values = {}) {
  const template = T[key] || key;
  return template.replace(/\{([a-z_]+)\}/g, (whole, name) => {
    const value = values[name];
    if (value === undefined || value === null) return whole;
    return typeof value === "number" ? numbers.format(value) : String(value);
  });
}

const clientTexts = {
  [CLIENT_CODES.AGENT_NOT_RUNNING]: T.agent_not_running,
  [CLIENT_CODES.LNA_DENIED]: T.lna_denied,
  [CLIENT_CODES.AGENT_TOO_OLD]: T.agent_too_old,
  [CLIENT_CODES.CONNECTION_LOST]: T.connection_lost,
  [CLIENT_CODES.TIMEOUT]: T.timeout,
  UNEXPECTED: T.unexpected,
};

// --- showing -----------------------------------------------------------------------------

function status(text) {
  els.status.textContent = text || "";
}

function clearError() {
  els.error.replaceChildren();
  els.error.hidden = true;
}

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

/** The text of any failure, in the page's language. */
function describe(error, delivered = 0) {
  if (error instanceof PageError || error instanceof ApiError) return error.message;
  if (error instanceof AgentError && error.code === "CANCELLED" && delivered === 0) {
    return T.cancelled_nothing;
  }
  return errorText(error, { language, texts: clientTexts });
}

function showError(error, delivered = 0) {
  clearError();
  els.error.append(paragraph(describe(error, delivered)));
  if (error instanceof AgentError && INSTALLER_CODES.has(error.code) && config.installer_url) {
    const p = document.createElement("p");
    p.append(link(config.installer_url, T.install_link));
    p.querySelector("a").id = "sign-installer";
    els.error.append(p);
  }
  if (error instanceof AgentError && error.code === CLIENT_CODES.LNA_DENIED) {
    const help = paragraph(T.lna_help);
    help.id = "sign-lna-help";
    els.error.append(help);
  }
  if (!(error instanceof PageError || error instanceof ApiError || error instanceof AgentError)) {
    console.error(error);
  }
  els.error.hidden = false;
  status("");
}

function showProgress(signed, total) {
  els.progress.hidden = false;
  els.bar.max = Math.max(total, 1);
  els.bar.value = signed;
  // Batch mode: one token signature covers every dose ("1 chữ ký cho 678 mũi tiêm"), so
  // "0/1 records" would say nothing about what is being signed.
  if (state.doses && state.doses > total) {
    const key = signed >= total ? "signed_batch" : "signing_batch";
    els.progressText.textContent = fill(key, { count: total, doses: state.doses });
  } else {
    els.progressText.textContent = fill("signing", { signed, total });
  }
}

function showCode(code) {
  els.codeValue.textContent = code || "";
  els.code.hidden = !code;
}

function showDropped(dropped) {
  if (!dropped || !dropped.length) return;
  const box = document.createElement("div");
  box.id = "sign-dropped";
  box.className = "flash";
  box.append(paragraph(T.dropped_title));
  const list = document.createElement("ul");
  for (const text of dropped) {
    const item = document.createElement("li");
    item.textContent = text;
    list.append(item);
  }
  box.append(list);
  els.status.before(box);
}

// --- the platform's JSON API -------------------------------------------------------------

async function api(path, body) {
  let response;
  try {
    response = await fetch(`${config.api_base}${path}`, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": config.csrf_token,
      },
      body: JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(fill("network_error", { reason: error.message }), { retryable: true });
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || payload === null) {
    const text =
      payload && typeof payload.message === "string"
        ? payload.message
        : fill("server_error", { status: response.status });
    throw new ApiError(text, {
      status: response.status,
      key: payload && payload.error,
      retryable: response.status >= 500 || response.status === 429 || payload === null,
    });
  }
  return payload;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A post that survives a network hiccup or a busy server (the API's posts are idempotent). */
async function apiRetrying(path, body) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await api(path, body);
    } catch (error) {
      if (!(error instanceof ApiError) || !error.retryable || attempt >= POST_TRIES) throw error;
      await sleep(POST_DELAYS[Math.min(attempt - 1, POST_DELAYS.length - 1)]);
    }
  }
}

const batchPath = (batch, tail) => `/batches/${encodeURIComponent(batch)}${tail}`;

// --- signatures received and not yet on the platform ---------------------------------------

/**
 * Every chunk of signatures the agent delivered is kept in this browser (IndexedDB, per batch,
 * attempt and offset) until the platform has stored it. When the platform is unreachable longer
 * than a post's retries, the signatures wait here, and are posted when it is back (on this
 * page, or when the batch's page is opened again) before the agent is asked for anything more:
 * a long outage never makes the officer sign the same records twice. Without IndexedDB
 * (disabled by policy) they are kept in memory for as long as the page stays open.
 */
const HELD_DATABASE = "kyso-signing";
const HELD_STORE = "held";
const HELD_RETRY_MS = 3000;

function heldRequest(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

class HeldSignatures {
  constructor() {
    this.memory = new Map(); // "attempt offset" -> {batch, attempt, offset, signatures}
    this.database = this.open();
  }

  async open() {
    try {
      const request = indexedDB.open(HELD_DATABASE, 1);
      request.onupgradeneeded = () => {
        const store = request.result.createObjectStore(HELD_STORE, {
          keyPath: ["attempt", "offset"],
        });
        store.createIndex("batch", "batch");
      };
      return await heldRequest(request);
    } catch {
      return null;
    }
  }

  async store(mode, work) {
    const database = await this.database;
    if (!database) return undefined;
    try {
      const transaction = database.transaction(HELD_STORE, mode);
      const result = await heldRequest(work(transaction.objectStore(HELD_STORE)));
      await new Promise((resolve, reject) => {
        transaction.oncomplete = resolve;
        transaction.onerror = () => reject(transaction.error);
        transaction.onabort = () => reject(transaction.error);
      });
      return result;
    } catch (error) {
      console.warn("kyso: the browser's storage refused the signatures:", error);
      return undefined;
    }
  }

  async put(batch, attempt, offset, signatures) {
    const chunk = { batch, attempt, offset, signatures };
    this.memory.set(`${attempt} ${offset}`, chunk);
    await this.store("readwrite", (store) => store.put(chunk));
  }

  async remove(attempt, offset) {
    this.memory.delete(`${attempt} ${offset}`);
    await this.store("readwrite", (store) => store.delete([attempt, offset]));
  }

  /** The batch's held chunks, by attempt and offset. */
  async list(batch) {
    const found = new Map();
    const stored = (await this.store("readonly", (s) => s.index("batch").getAll(batch))) || [];
    for (const chunk of stored) found.set(`${chunk.attempt} ${chunk.offset}`, chunk);
    for (const [key, chunk] of this.memory) if (chunk.batch === batch) found.set(key, chunk);
    const number = (chunk) => Number(String(chunk.attempt).split(".").pop());
    return [...found.values()].sort((a, b) => number(a) - number(b) || a.offset - b.offset);
  }
}

const held = new HeldSignatures();
const countOf = (chunks) => chunks.reduce((sum, chunk) => sum + chunk.signatures.length, 0);

/**
 * Posts the batch's held signatures. The platform refusing a chunk (4xx) is final: that chunk
 * is dropped and reported. Unreachable (network, 5xx): with ``wait`` the page says so and tries
 * again every few seconds until the platform has them all; without, it returns what is held.
 */
async function deliverHeld(batch, { wait = false } = {}) {
  const refused = [];
  for (;;) {
    const chunks = await held.list(batch);
    if (!chunks.length) return { refused, held: 0 };
    let unreachable = null;
    for (const chunk of chunks) {
      try {
        await api(batchPath(batch, "/signatures"), {
          attempt: chunk.attempt,
          offset: chunk.offset,
          signatures: chunk.signatures,
        });
      } catch (error) {
        if (error instanceof ApiError && !error.retryable) {
          refused.push({ count: chunk.signatures.length, error });
        } else {
          unreachable = error;
          break;
        }
      }
      await held.remove(chunk.attempt, chunk.offset);
    }
    if (!unreachable) continue; // all posted: one more look confirms nothing is left
    const count = countOf(await held.list(batch));
    if (!wait) return { refused, held: count, error: unreachable };
    clearError();
    els.error.append(paragraph(fill("held_waiting", { count, reason: describe(unreachable) })));
    els.error.hidden = false;
    status(fill("held_retrying", { count }));
    await sleep(HELD_RETRY_MS);
  }
}

/** The API takes at most this many signatures in one post (MAX_SIGNATURES_PER_POST). */
const MAX_PER_POST = 500;

/**
 * Posts the signatures as they arrive, one post after the other, in order. Chunks that arrive
 * while a post is running are sent together in the next one (up to MAX_PER_POST): each post has
 * a fixed cost on the server, and a fast token delivers chunks faster than one post a chunk.
 */
class ChunkPoster {
  constructor(batch, attemptId, total) {
    this.batch = batch;
    this.attemptId = attemptId;
    this.total = total;
    this.received = 0;
    this.saved = 0;
    this.refused = 0; // signatures the platform refused to take (a 4xx answer)
    this.failed = [];
    this.waiting = []; // chunks not posted yet: {offset, signatures}, in offset order
    this.running = null; // the posting loop, while it runs
  }

  add(offset, signatures) {
    this.received = Math.max(this.received, offset + signatures.length);
    // Kept in the browser first: the platform may be away longer than the post's retries.
    const keeping = held.put(this.batch, this.attemptId, offset, signatures);
    this.waiting.push({ offset, signatures, keeping });
    if (!this.running) this.running = this.run().finally(() => (this.running = null));
  }

  /** Takes the next run of contiguous chunks that fits in one post. */
  next() {
    const first = this.waiting.shift();
    const signatures = first.signatures.slice();
    const parts = [first];
    while (
      this.waiting.length &&
      this.waiting[0].offset === first.offset + signatures.length &&
      signatures.length + this.waiting[0].signatures.length <= MAX_PER_POST
    ) {
      const part = this.waiting.shift();
      signatures.push(...part.signatures);
      parts.push(part);
    }
    return { offset: first.offset, signatures, parts };
  }

  async run() {
    while (this.waiting.length) {
      const { offset, signatures, parts } = this.next();
      try {
        await apiRetrying(batchPath(this.batch, "/signatures"), {
          attempt: this.attemptId,
          offset,
          signatures,
        });
        this.saved += signatures.length;
      } catch (error) {
        // Unreachable: the chunks stay held (deliverHeld posts them later). Refused: final.
        this.failed.push({ offset, count: signatures.length, error });
        if (error instanceof ApiError && !error.retryable) {
          this.refused += signatures.length;
        } else {
          continue;
        }
      }
      for (const part of parts) {
        await part.keeping;
        await held.remove(this.attemptId, part.offset);
      }
    }
  }

  async drain() {
    while (this.running) await this.running;
  }
}

// --- the flow ----------------------------------------------------------------------------

const state = {
  batch: config && config.mode === "resume" ? config.batch : null,
  resultUrl: null,
  attempt: null, // the last attempt, while it may be sent again
  client: null,
  running: false,
};

function normaliseSerial(serial) {
  const hex = String(serial || "")
    .toUpperCase()
    .replace(/[^0-9A-F]/g, "");
  return hex.replace(/^0+(?=.)/, "");
}

/** The certificate on the token whose serial is the officer's registered one. */
function pickCertificate(certificates) {
  if (!config.registered_serial) throw new PageError(T.no_registered);
  if (!certificates.length) throw new PageError(T.no_certificates);
  const wanted = normaliseSerial(config.registered_serial);
  const found = certificates.find((c) => normaliseSerial(c.serial) === wanted);
  if (!found) {
    const listed = certificates
      .map((c) => {
        const facts = certificateFacts(c);
        return `${facts.serial} (${facts.organisation}, ${facts.key_type}, ${facts.valid})`;
      })
      .join("; ");
    throw new PageError(
      fill("wrong_certificate", { registered: formatSerial(wanted), found: listed }),
    );
  }
  return found;
}

async function attemptFor(certificate) {
  const previous = state.attempt;
  if (previous && previous.certificate === certificate.fingerprint) return previous;
  status(T.preparing);
  if (state.batch) {
    const answer = await api(batchPath(state.batch, "/attempts"), { der: certificate.der });
    return answer.attempt;
  }
  const prepared = await api("/batches", { der: certificate.der });
  state.batch = prepared.batch;
  state.resultUrl = prepared.result_url;
  state.doses = prepared.total;
  showDropped(prepared.dropped);
  return prepared.attempt;
}

/** Closes the batch if nothing is pending and opens its result page; false when it failed. */
async function complete(reason) {
  status(T.completing);
  let done;
  try {
    done = await apiRetrying(batchPath(state.batch, "/complete"), {});
  } catch (error) {
    clearError();
    els.error.append(paragraph(fill("complete_failed", { reason: describe(error) })));
    const url = state.resultUrl || (config.mode === "resume" ? window.location.href : null);
    if (url) els.error.append(link(url, T.result_link));
    els.error.hidden = false;
    status("");
    return false;
  }
  if (reason) {
    try {
      sessionStorage.setItem(MESSAGE_KEY, JSON.stringify({ batch: state.batch, text: reason }));
    } catch {
      // storage disabled: the result page shows the counts anyway
    }
  }
  window.location.assign(done.result_url || state.resultUrl);
  return true;
}

async function runAttempt(client, attempt) {
  const total = attempt.count || attempt.digests.length;
  const poster = new ChunkPoster(state.batch, attempt.id, total);
  showCode(attempt.code);
  showProgress(0, total);
  status(fill("consent", { code: attempt.code }));
  els.cancel.hidden = false;
  els.cancel.disabled = false;
  let failure = null;
  try {
    await client.sign(attempt, {
      onProgress: (stage, signed, count) => {
        if (stage === "consent") {
          status(fill("consent", { code: attempt.code }));
        } else {
          showCode(null); // the dialog is closed
          status("");
          showProgress(signed, count);
        }
      },
      onSignatures: (offset, signatures) => {
        state.attempt = null; // spent: the agent refuses its batch id from now on
        poster.add(offset, signatures);
      },
    });
  } catch (error) {
    failure = error;
  }
  els.cancel.hidden = true;
  showCode(null);
  if (poster.received > 0) status(fill("saving", { saved: poster.saved, total: poster.received }));
  await poster.drain();
  if (poster.received === 0) {
    // Nothing signed: say why; the same attempt may go again unless the agent spent it.
    if (failure instanceof AgentError && SPENT.has(failure.code)) state.attempt = null;
    els.progress.hidden = true;
    throw failure || new PageError(fill("unexpected", { reason: "no signatures" }));
  }
  let reason = null;
  if (failure) reason = describe(failure, poster.received);
  const refused = poster.failed.filter((f) => f.error instanceof ApiError && !f.error.retryable);
  if (poster.failed.length > refused.length) {
    // The platform was away longer than the retries: what the agent signed waits here.
    const delivered = await deliverHeld(state.batch, { wait: true });
    refused.push(...delivered.refused);
    clearError();
  }
  if (refused.length) {
    const lost = refused.reduce((sum, f) => sum + f.count, 0);
    const why = describe(refused[0].error);
    reason = [reason, fill("save_failed", { count: lost, reason: why })].filter(Boolean).join(" ");
  }
  await complete(reason);
}

async function onSign() {
  if (state.running) return;
  state.running = true;
  els.button.disabled = true;
  clearError();
  const client = new AgentClient({ port: config.agent_port, minVersion: config.min_version });
  state.client = client;
  try {
    status(T.connecting);
    const hello = await client.connect();
    if (hello.state === "busy") throw new PageError(T.agent_busy);
    if (hello.state === "no_token") throw new PageError(T.no_token);
    status(T.reading_certificates);
    const certificate = pickCertificate(await client.listCertificates());
    if (state.batch) await deliverOrStop(state.batch);
    const attempt = await attemptFor(certificate);
    state.attempt = attempt;
    await runAttempt(client, attempt);
  } catch (error) {
    showError(error);
  } finally {
    client.close();
    state.client = null;
    state.running = false;
    els.button.disabled = false;
  }
}

/** Signatures held from an earlier try go to the platform before anything is signed again. */
async function deliverOrStop(batch) {
  const delivered = await deliverHeld(batch);
  if (delivered.held) {
    throw new PageError(
      fill("held_waiting", { count: delivered.held, reason: describe(delivered.error) }),
    );
  }
}

/**
 * The batch's page, opened with signatures held in this browser: they are posted first, and the
 * page then opens again with the new counts. True when it is going away (the button stays
 * disabled: a click now would be lost with the page).
 */
async function deliverOnOpen(batch) {
  const chunks = await held.list(batch);
  if (!chunks.length) return false;
  status(fill("held_found", { count: countOf(chunks) }));
  const delivered = await deliverHeld(batch, { wait: true });
  let reason = null;
  if (delivered.refused.length) {
    const lost = delivered.refused.reduce((sum, f) => sum + f.count, 0);
    reason = fill("save_failed", { count: lost, reason: describe(delivered.refused[0].error) });
  }
  return complete(reason);
}

async function onCancel() {
  if (!state.client) return;
  els.cancel.disabled = true;
  status(T.cancelling);
  try {
    await state.client.cancel();
  } catch (error) {
    showError(error);
  }
}

function start() {
  if (!config || !els.button) return;
  if (config.mode === "resume") {
    try {
      const carried = JSON.parse(sessionStorage.getItem(MESSAGE_KEY) || "null");
      sessionStorage.removeItem(MESSAGE_KEY);
      if (carried && carried.batch === config.batch && carried.text) {
        els.error.append(paragraph(carried.text));
        els.error.hidden = false;
      }
    } catch {
      // nothing carried
    }
  }
  els.button.addEventListener("click", onSign);
  els.cancel.addEventListener("click", onCancel);
  // The button (disabled in the page's HTML) is enabled only once the signatures this browser
  // still holds for the batch are on the platform: otherwise the reload that follows their
  // delivery would swallow the officer's click.
  const ready = () => {
    els.button.disabled = config.within_limits === false;
    els.button.dataset.ready = "1";
  };
  if (config.mode === "resume" && config.batch) {
    deliverOnOpen(config.batch)
      .then((leaving) => leaving || ready())
      .catch((error) => {
        showError(error);
        ready();
      });
  } else {
    ready();
  }
}

start();
