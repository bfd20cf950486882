// The page's client of the Kyso signing agent: the ONLY JavaScript that knows the agent
// protocol (protocol.md, version 1). An ES module without a bundler; it shows nothing itself:
// texts for the officer come from the agent (its errors carry {vi, en}) or from the page
// (the platform's catalogue), through errorText() below.

export const DEFAULT_PORT = 47321;
export const DEFAULT_HOST = "127.0.0.1";
/** Protocol versions this client speaks, and the oldest agent the platform accepts. */
export const PROTOCOL_VERSIONS = Object.freeze([1]);
export const MIN_VERSION = 1;

/** Failure codes made by this client (not sent by the agent). */
export const CLIENT_CODES = Object.freeze({
  AGENT_NOT_RUNNING: "AGENT_NOT_RUNNING", // connection refused, or closed before it opened
  LNA_DENIED: "LNA_DENIED", // Chrome's Local Network Access permission is denied
  AGENT_TOO_OLD: "AGENT_TOO_OLD", // the agent's best version is below the platform's minimum
  CONNECTION_LOST: "CONNECTION_LOST", // the socket closed while a request was unfinished
  TIMEOUT: "TIMEOUT", // no answer in time
});

const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
// Replies that end a request (progress and signatures do not).
const TERMINAL = new Set(["result", "error", "hello", "certificates", "cancelled"]);
// One letter per request type: ids read h1, c1, s1, x1 as in protocol.md's examples.
const ID_PREFIX = { hello: "h", list_certificates: "c", sign: "s", cancel: "x" };
const OPEN = 1;
// Agent states (hello and the unsolicited state event).
const STATES = new Set(["ready", "no_token", "busy"]);

/** An error of the agent (code from protocol.md section 4) or of this client (CLIENT_CODES). */
export class AgentError extends Error {
  /**
   * @param {string} code
   * @param {{agentMessage?: {vi: string, en: string} | null, detail?: object, fromAgent?: boolean}} [options]
   */
  constructor(code, { agentMessage = null, detail = {}, fromAgent = false } = {}) {
    super(agentMessage && agentMessage.en ? `${code}: ${agentMessage.en}` : code);
    this.name = "AgentError";
    this.code = code;
    /** The agent's own text, {vi, en}; null for the client's codes. */
    this.agentMessage = agentMessage;
    /** True when the agent sent the error. */
    this.fromAgent = fromAgent;
    /** Detail fields: field, index, max, supported, reason, signed, retries_left, version, ... */
    this.detail = { ...detail };
    /** Signatures of this request the client received (all passed to onSignatures). */
    this.delivered = 0;
    for (const [key, value] of Object.entries(this.detail)) {
      if (!(key in this)) this[key] = value;
    }
  }
}

function agentError(message) {
  const { type, id, code, message: text, ...detail } = message;
  let agentMessage = null;
  if (text && typeof text === "object" && typeof text.vi === "string") {
    agentMessage = { vi: text.vi, en: typeof text.en === "string" ? text.en : text.vi };
  } else if (typeof text === "string") {
    agentMessage = { vi: text, en: text };
  }
  return new AgentError(String(code || "INTERNAL_ERROR"), {
    agentMessage,
    detail,
    fromAgent: true,
  });
}

function fill(template, values) {
  return String(template).replace(/\{([a-z_]+)\}/g, (whole, key) =>
    values[key] === undefined || values[key] === null ? whole : String(values[key]),
  );
}

/**
 * The text to show the officer for any error, in the page's language.
 * Agent errors use the agent's own message; the client's codes (and anything else) use the
 * texts the page gives, keyed by code (AGENT_NOT_RUNNING, ..., and UNEXPECTED for other
 * errors). Placeholders such as {signed} or {min_version} are filled from the error's detail.
 * @param {unknown} error
 * @param {{language?: string, texts?: Record<string, string>}} [options]
 */
export function errorText(error, { language = "vi", texts = {} } = {}) {
  if (error instanceof AgentError) {
    if (error.agentMessage) {
      return error.agentMessage[language === "en" ? "en" : "vi"] || error.agentMessage.vi;
    }
    const template = texts[error.code] || texts.UNEXPECTED || error.code;
    return fill(template, error.detail);
  }
  const reason = error instanceof Error ? error.message : String(error);
  return fill(texts.UNEXPECTED || reason, { reason });
}

/**
 * A connection to the agent on the officer's PC.
 *
 * Options: port (47321), host ("127.0.0.1"), WebSocket (constructor; injectable for tests),
 * permissions (navigator.permissions; injectable), versions (PROTOCOL_VERSIONS), minVersion
 * (MIN_VERSION), and timeouts in milliseconds: connectTimeout (the browser may be showing its
 * Local Network Access prompt meanwhile), helloTimeout, listTimeout (the agent may ask the
 * officer to approve this page), consentTimeout (the agent's PIN dialog is open), signIdleTimeout
 * (longest silence while the token signs), cancelTimeout.
 * onState(state): called with "ready", "no_token" or "busy" when the agent announces a token
 * inserted or removed after hello (protocol.md 2.5); `client.hello.state` follows it too.
 */
export class AgentClient {
  constructor(options = {}) {
    this.port = options.port ?? DEFAULT_PORT;
    this.host = options.host ?? DEFAULT_HOST;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.permissions =
      options.permissions !== undefined
        ? options.permissions
        : (globalThis.navigator && globalThis.navigator.permissions) || null;
    this.versions = Array.from(options.versions ?? PROTOCOL_VERSIONS);
    this.minVersion = options.minVersion ?? MIN_VERSION;
    this.timeouts = {
      connect: options.connectTimeout ?? 60_000,
      hello: options.helloTimeout ?? 10_000,
      list: options.listTimeout ?? 180_000,
      consent: options.consentTimeout ?? 600_000,
      signIdle: options.signIdleTimeout ?? 60_000,
      cancel: options.cancelTimeout ?? 10_000,
    };
    this.socket = null;
    this.hello = null; // {version, state} once connected
    this.pending = new Map(); // id -> {onMessage, fail}
    this.counters = {};
    this.signing = null; // {id, delivered}
    this.opening = null;
    this.onState = typeof options.onState === "function" ? options.onState : () => {};
  }

  get url() {
    const host = this.host.includes(":") ? `[${this.host}]` : this.host;
    return `ws://${host}:${this.port}/`;
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === OPEN && this.hello !== null;
  }

  /**
   * Opens the connection (call it on a user gesture: Chrome may ask for the Local Network
   * Access permission) and says hello. Resolves {version, state}.
   */
  async connect() {
    if (this.connected) return this.hello;
    await this._openSocket();
    let reply;
    try {
      reply = await this._request(
        { type: "hello", id: this.nextId("hello"), versions: this.versions },
        { timeout: this.timeouts.hello },
      );
    } catch (error) {
      this.close();
      throw error;
    }
    const version = reply.version;
    if (!Number.isInteger(version) || version < this.minVersion) {
      this.close();
      throw new AgentError(CLIENT_CODES.AGENT_TOO_OLD, {
        detail: { version, min_version: this.minVersion },
      });
    }
    this.hello = { version, state: reply.state };
    return this.hello;
  }

  /** The certificates with a private key on the present tokens (protocol.md 2.2). */
  async listCertificates() {
    this.requireConnected();
    const reply = await this._request(
      { type: "list_certificates", id: this.nextId("list_certificates") },
      { timeout: this.timeouts.list },
    );
    return Array.isArray(reply.certificates) ? reply.certificates : [];
  }

  /**
   * Signs a batch (protocol.md 2.3). Only the request's own fields are sent, whatever else
   * `request` holds. Resolves {batchId, signed}; rejects with an AgentError whose `signed`
   * says how many signatures were delivered (they were all passed to onSignatures first).
   */
  async sign(request, { onProgress = () => {}, onSignatures = () => {} } = {}) {
    this.requireConnected();
    if (this.signing) {
      throw new AgentError("BUSY", { detail: { reason: "a batch is running on this page" } });
    }
    const { manifest, certificate, algorithm, digests } = request;
    if (!Array.isArray(digests)) throw new TypeError("digests must be an array of base64 strings");
    const id = this.nextId("sign");
    const state = { id, delivered: 0, stage: "consent" };
    this.signing = state;
    const call = (callback, ...args) => {
      try {
        callback(...args);
      } catch (error) {
        console.error("Kyso agent client: a callback failed", error);
      }
    };
    try {
      const reply = await this._request(
        { type: "sign", id, manifest, certificate, algorithm, digests },
        {
          timeout: this.timeouts.consent,
          delivered: () => state.delivered,
          onMessage: (message, rearm) => {
            if (message.type === "progress") {
              state.stage = message.stage;
              rearm(message.stage === "consent" ? this.timeouts.consent : this.timeouts.signIdle);
              call(onProgress, message.stage, message.signed, message.total);
            } else if (message.type === "signatures") {
              rearm(this.timeouts.signIdle);
              const signatures = Array.isArray(message.signatures) ? message.signatures : [];
              state.delivered = message.offset + signatures.length;
              call(onSignatures, message.offset, signatures, message.signed, message.total);
              call(onProgress, "signing", message.signed, message.total);
            }
          },
        },
      );
      return { batchId: reply.batch_id, signed: reply.signed };
    } finally {
      this.signing = null;
    }
  }

  /**
   * Asks the agent to stop the running batch; its sign() then rejects with CANCELLED.
   * Resolves true when the agent confirmed, false when nothing was running.
   */
  async cancel() {
    const running = this.signing;
    if (!running || !this.connected) return false;
    try {
      await this._request(
        { type: "cancel", id: this.nextId("cancel"), target: running.id },
        { timeout: this.timeouts.cancel },
      );
      return true;
    } catch (error) {
      if (error instanceof AgentError && error.code === "NOTHING_TO_CANCEL") return false;
      throw error;
    }
  }

  /** Closes the connection; an unfinished request rejects with CONNECTION_LOST. */
  close() {
    const socket = this.socket;
    this.socket = null;
    this.hello = null;
    if (socket) {
      this.detach(socket);
      try {
        socket.close(1000);
      } catch {
        // already closed
      }
    }
    this.failAll((entry) => this.lost(entry));
  }

  // --- internals -------------------------------------------------------------------------

  nextId(type) {
    this.counters[type] = (this.counters[type] || 0) + 1;
    const id = `${ID_PREFIX[type] || "r"}${this.counters[type]}`;
    if (!ID_PATTERN.test(id)) throw new Error(`invalid request id ${id}`);
    return id;
  }

  requireConnected() {
    if (!this.connected) {
      throw new AgentError(CLIENT_CODES.CONNECTION_LOST, { detail: { signed: 0 } });
    }
  }

  lost(entry) {
    const signed = entry.delivered ? entry.delivered() : 0;
    const error = new AgentError(CLIENT_CODES.CONNECTION_LOST, { detail: { signed } });
    error.delivered = signed;
    return error;
  }

  failAll(makeError) {
    const entries = Array.from(this.pending.values());
    this.pending.clear();
    for (const entry of entries) entry.fail(makeError(entry));
  }

  detach(socket) {
    socket.onopen = null;
    socket.onmessage = null;
    socket.onerror = null;
    socket.onclose = null;
  }

  /** Why a connection could not be opened: a denied permission, or no agent listening. */
  async diagnose() {
    try {
      if (this.permissions && typeof this.permissions.query === "function") {
        const status = await this.permissions.query({ name: "loopback-network" });
        if (status && status.state === "denied") {
          return new AgentError(CLIENT_CODES.LNA_DENIED, { detail: { port: this.port } });
        }
      }
    } catch {
      // A browser without Local Network Access does not know the permission's name.
    }
    return new AgentError(CLIENT_CODES.AGENT_NOT_RUNNING, { detail: { port: this.port } });
  }

  /** Opens the WebSocket without saying hello (connect() does; the conformance tests not). */
  _openSocket() {
    if (this.socket && this.socket.readyState === OPEN) return Promise.resolve();
    if (this.opening) return this.opening;
    this.opening = new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new this.WebSocket(this.url);
      } catch (error) {
        // A URL the browser refuses outright (e.g. blocked by policy).
        this.diagnose().then(reject);
        return;
      }
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        this.detach(socket);
        try {
          socket.close();
        } catch {
          // never opened
        }
        reject(new AgentError(CLIENT_CODES.TIMEOUT, { detail: { stage: "connect" } }));
      }, this.timeouts.connect);
      const failed = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.detach(socket);
        this.diagnose().then(reject);
      };
      socket.onerror = failed;
      socket.onclose = failed;
      socket.onopen = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.socket = socket;
        this.counters = {};
        socket.onmessage = (event) => this.receive(event.data);
        socket.onerror = () => {};
        socket.onclose = () => {
          if (this.socket === socket) {
            this.socket = null;
            this.hello = null;
          }
          this.failAll((entry) => this.lost(entry));
        };
        resolve();
      };
    }).finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  /**
   * Sends one request and resolves with its terminal reply (rejects on an error reply).
   * The public methods build every request; this takes any message so that the protocol's
   * conformance tests can replay requests the public methods would never make.
   */
  _request(message, { timeout = this.timeouts.hello, onMessage = () => {}, delivered } = {}) {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) {
      return Promise.reject(new AgentError(CLIENT_CODES.CONNECTION_LOST, { detail: { signed: 0 } }));
    }
    return new Promise((resolve, reject) => {
      const id = message.id;
      let timer = null;
      const entry = {
        delivered,
        fail: (error) => {
          clearTimeout(timer);
          reject(error);
        },
        onMessage: (reply) => {
          if (!TERMINAL.has(reply.type)) {
            onMessage(reply, arm);
            return;
          }
          this.pending.delete(id);
          clearTimeout(timer);
          if (reply.type === "error") {
            const error = agentError(reply);
            error.delivered = delivered ? delivered() : 0;
            reject(error);
          } else {
            resolve(reply);
          }
        },
      };
      const arm = (ms) => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          if (this.pending.get(id) !== entry) return;
          this.pending.delete(id);
          if (this.signing && this.signing.id === id) {
            // Stop the agent's batch too: the page will not wait for it any more.
            this.sendQuietly({ type: "cancel", id: this.nextId("cancel"), target: id });
          }
          const signed = delivered ? delivered() : 0;
          const error = new AgentError(CLIENT_CODES.TIMEOUT, {
            detail: { signed, stage: message.type },
          });
          error.delivered = signed;
          reject(error);
        }, ms);
      };
      this.pending.set(id, entry);
      arm(timeout);
      try {
        socket.send(JSON.stringify(message));
      } catch {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(this.lost(entry));
      }
    });
  }

  sendQuietly(message) {
    try {
      if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(message));
    } catch {
      // the connection is going away anyway
    }
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.error("Kyso agent client: a reply that is not JSON was ignored");
      return;
    }
    if (!message || typeof message !== "object" || Array.isArray(message)) return;
    if (message.type === "state" && !("id" in message)) {
      // Unsolicited (protocol.md 2.5): a token was inserted or removed.
      if (this.hello === null || !STATES.has(message.state)) return;
      this.hello = { ...this.hello, state: message.state };
      try {
        this.onState(message.state);
      } catch (error) {
        console.error("Kyso agent client: the onState callback failed", error);
      }
      return;
    }
    if (message.id === null && message.type === "error") {
      // The agent could not read which request this answers: it fails them all.
      const error = agentError(message);
      this.failAll(() => error);
      return;
    }
    const entry = this.pending.get(message.id);
    if (entry) entry.onMessage(message);
  }
}
