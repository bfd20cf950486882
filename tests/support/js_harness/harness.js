// Test-only helpers for tests/platform/test_agent_client_js.py: a scripted WebSocket that
// answers from a golden exchange, and drivers that run the real agent-client.js against it
// or against a real agent. Served with the platform's static files at the test origin.
import * as client from "/static/agent-client.js";

window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});

const { AgentClient, AgentError, errorText } = client;

/** A WebSocket look-alike that checks each request against the script and plays the replies. */
export class ScriptedSocket {
  constructor(url, script, record) {
    this.url = url;
    this.readyState = 0;
    this.script = script.slice();
    this.record = record;
    record.urls.push(url);
    setTimeout(() => {
      this.readyState = 1;
      if (this.onopen) this.onopen({});
      this.playAgent();
    }, 0);
  }

  send(data) {
    this.record.sent.push(JSON.parse(data));
    const next = this.script[0];
    if (next && next.from === "page") this.script.shift();
    this.playAgent();
  }

  playAgent() {
    while (this.script.length && this.script[0].from === "agent") {
      const { message } = this.script.shift();
      const data = JSON.stringify(message);
      setTimeout(() => {
        if (this.readyState === 1 && this.onmessage) this.onmessage({ data });
      }, 0);
    }
  }

  close(code) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.record.closed.push(code ?? null);
    setTimeout(() => this.onclose && this.onclose({ code: code ?? 1005 }), 0);
  }
}

function describe(error) {
  if (error instanceof AgentError) {
    return {
      error: error.code,
      fromAgent: error.fromAgent,
      agentMessage: error.agentMessage,
      detail: error.detail,
      signed: error.signed ?? null,
      vi: errorText(error, { language: "vi", texts: window.kysoTexts || {} }),
      en: errorText(error, { language: "en", texts: window.kysoTexts || {} }),
    };
  }
  return { error: "NOT_AN_AGENT_ERROR", text: String(error && error.stack ? error.stack : error) };
}

/**
 * Runs `steps` (a list of [method, argument]) on a client whose socket plays `script`.
 * Returns what the client sent, each step's outcome and the callbacks it received.
 */
export async function replay(script, steps, options = {}) {
  const record = { sent: [], urls: [], closed: [] };
  const FakeSocket = function (url) {
    return new ScriptedSocket(url, script, record);
  };
  const outcomes = [];
  const callbacks = [];
  const agent = new AgentClient({
    ...options,
    WebSocket: FakeSocket,
    onState: (state) => callbacks.push(["state", state]),
  });
  for (const [method, argument] of steps) {
    try {
      let value;
      if (method === "settle") {
        // Lets unsolicited messages queued after the last reply arrive.
        value = await new Promise((resolve) => setTimeout(() => resolve(undefined), 50));
      } else if (method === "sign") {
        value = await agent.sign(argument, {
          onProgress: (...args) => callbacks.push(["progress", ...args]),
          onSignatures: (...args) => callbacks.push(["signatures", ...args]),
        });
      } else if (method === "raw") {
        value = await agent._request(argument);
      } else if (method === "open") {
        value = await agent._openSocket();
      } else {
        value = await agent[method](argument);
      }
      outcomes.push({ ok: value === undefined ? null : value });
    } catch (error) {
      outcomes.push(describe(error));
    }
  }
  const state = agent.hello ? agent.hello.state : null;
  return { sent: record.sent, urls: record.urls, closed: record.closed, outcomes, callbacks, state };
}

/** A client on a real agent; the run is kept on window.run for the test to watch. */
export async function realSign(options, request, { cancelAfter = null } = {}) {
  const agent = new AgentClient(options);
  const run = { chunks: [], progress: [], delivered: 0, outcome: null };
  window.run = run;
  try {
    run.hello = await agent.connect();
    run.certificates = await agent.listCertificates();
    const value = await agent.sign(request, {
      onProgress: (stage, signed, total) => run.progress.push([stage, signed, total]),
      onSignatures: (offset, signatures, signed, total) => {
        run.chunks.push({ offset, signatures, signed, total });
        run.delivered = signed;
        if (cancelAfter !== null && signed >= cancelAfter && run.cancelled === undefined) {
          run.cancelled = null;
          agent.cancel().then(
            (v) => { run.cancelled = v; },
            (e) => { run.cancelled = String(e); },
          );
        }
      },
    });
    run.outcome = { ok: value };
  } catch (error) {
    run.outcome = describe(error);
  }
  agent.close();
  return run;
}

/** connect() then listCertificates() on a real agent (or none). */
export async function realConnect(options, { list = true } = {}) {
  const agent = new AgentClient(options);
  const result = {};
  try {
    result.hello = await agent.connect();
    if (list) result.certificates = await agent.listCertificates();
    result.cancel = await agent.cancel(); // nothing running: false, nothing sent
    result.ok = true;
  } catch (error) {
    result.outcome = describe(error);
  }
  agent.close();
  return result;
}

window.harness = { replay, realSign, realConnect, client };
document.getElementById("ready").dataset.ready = "1";
