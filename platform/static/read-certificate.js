// "Đọc chứng thư số từ USB token" on the certificate registration page
// (templates/users/certificate.html): reads the certificates on the token through the signing
// agent (agent-client.js) and fills the form's serial field with the chosen one's serial.
// The form works without this script; every text comes from the page's configuration.

import { AgentClient, AgentError, CLIENT_CODES, errorText } from "./agent-client.js";
import { certificateFacts, serialDigits } from "./certificate-facts.js";

const configEl = document.getElementById("kyso-read-certificate-config");
const config = configEl ? JSON.parse(configEl.textContent) : null;
const T = (config && config.texts) || {};
// a certificate's labels, the same as on every page (common.cert_* in the catalogue)
const labels = (config && config.certificate_labels) || {};
const language = (config && config.language) === "en" ? "en" : "vi";
const numbers = new Intl.NumberFormat(language === "en" ? "en-US" : "vi-VN");

const box = document.getElementById("read-certificate");
const button = document.getElementById("read-certificate-button");
const statusEl = document.getElementById("read-certificate-status");
const errorEl = document.getElementById("read-certificate-error");
const listEl = document.getElementById("read-certificate-list");
const serialInput = document.querySelector("form input[name=serial]");

const clientTexts = {
  [CLIENT_CODES.AGENT_NOT_RUNNING]: T.agent_not_running,
  [CLIENT_CODES.LNA_DENIED]: T.lna_denied,
  [CLIENT_CODES.AGENT_TOO_OLD]: T.agent_too_old,
  [CLIENT_CODES.CONNECTION_LOST]: T.connection_lost,
  [CLIENT_CODES.TIMEOUT]: T.timeout,
  UNEXPECTED: T.unexpected,
};

class PageError extends Error {}

function fill(key, values = {}) {
  return (T[key] || key).replace(/\{([a-z_]+)\}/g, (whole, name) => {
    const value = values[name];
    if (value === undefined || value === null) return whole;
    return typeof value === "number" ? numbers.format(value) : String(value);
  });
}

function element(tag, text, attributes = {}) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = text;
  for (const [name, value] of Object.entries(attributes)) el.setAttribute(name, value);
  return el;
}

function showError(error) {
  errorEl.replaceChildren();
  const text =
    error instanceof PageError ? error.message : errorText(error, { language, texts: clientTexts });
  errorEl.append(element("p", text));
  if (
    error instanceof AgentError &&
    [CLIENT_CODES.AGENT_NOT_RUNNING, CLIENT_CODES.AGENT_TOO_OLD, "VERSION_UNSUPPORTED"].includes(
      error.code,
    ) &&
    config.installer_url
  ) {
    const p = element("p");
    p.append(element("a", T.install_link, { href: config.installer_url }));
    errorEl.append(p);
  }
  if (error instanceof AgentError && error.code === CLIENT_CODES.LNA_DENIED) {
    errorEl.append(element("p", T.lna_help));
  }
  if (!(error instanceof PageError || error instanceof AgentError)) console.error(error);
  errorEl.hidden = false;
  statusEl.textContent = "";
}

function use(certificate) {
  const shown = certificateFacts(certificate).serial;
  serialInput.value = shown;
  // The certificate itself goes with the serial: the platform checks it at registration
  // (trusted, valid, not revoked, the unit's).
  const derInput = document.querySelector("form input[name=certificate]");
  if (derInput && certificate.der) derInput.value = certificate.der;
  serialInput.dispatchEvent(new Event("input", { bubbles: true }));
  statusEl.textContent = fill("read_filled", { serial: shown });
  serialInput.focus();
}

function showList(certificates) {
  listEl.replaceChildren();
  if (certificates.length > 1) {
    listEl.append(element("p", fill("read_choose", { count: certificates.length })));
  }
  const list = element("ul", null, { class: "plain token-certificates" });
  const registered = config.registered_serial ? serialDigits(config.registered_serial) : null;
  certificates.forEach((certificate, index) => {
    const shown = certificateFacts(certificate);
    const item = element("li", null, { "data-serial": certificate.serial });
    if (registered && shown.serial_hex === registered) {
      item.classList.add("registered");
      item.append(element("p", T.read_registered, { class: "badge verified" }));
    }
    const facts = element("dl", null, { class: "facts certificate" });
    for (const [label, value, name] of [
      [labels.organisation, shown.organisation, "organisation"],
      [labels.tax_code, shown.tax_code, "tax_code"],
      [labels.key_type, shown.key_type, "key_type"],
      [labels.validity, shown.valid, "valid"],
      [labels.serial, shown.serial, "serial"],
    ]) {
      const row = element("div", null, { "data-fact": name });
      row.append(element("dt", label), element("dd", value));
      facts.append(row);
    }
    item.append(facts);
    if (certificates.length > 1) {
      const choose = element("button", T.read_use, {
        type: "button",
        id: `read-certificate-use-${index}`,
      });
      choose.addEventListener("click", () => use(certificate));
      item.append(choose);
    }
    list.append(item);
  });
  listEl.append(list);
  if (certificates.length === 1) use(certificates[0]);
}

async function read() {
  button.disabled = true;
  errorEl.hidden = true;
  listEl.replaceChildren();
  statusEl.textContent = T.read_reading;
  const client = new AgentClient({ port: config.agent_port, minVersion: config.min_version });
  try {
    const hello = await client.connect();
    if (hello.state === "busy") throw new PageError(T.agent_busy);
    if (hello.state === "no_token") throw new PageError(T.no_token);
    const certificates = await client.listCertificates();
    if (!certificates.length) throw new PageError(T.read_none);
    statusEl.textContent = "";
    showList(certificates);
  } catch (error) {
    showError(error);
  } finally {
    client.close();
    button.disabled = false;
  }
}

if (config && box && button && serialInput) {
  box.hidden = false;
  button.addEventListener("click", read);
}
