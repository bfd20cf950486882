// A certificate the agent lists (protocol.md 2.2) as people read it: organisation, tax code
// (MST), key type, validity and serial, written exactly as the platform's pages write them
// (kyso.platform.formatting.certificate_facts; a Chromium test compares the two).

const CURVES = { secp256r1: "P-256", secp384r1: "P-384", secp521r1: "P-521" };
const VIETNAM_MS = 7 * 3600 * 1000; // UTC+7, no daylight saving time

/** Upper-case hex in pairs: "0A 1B 2C" (formatting.serial). */
export function formatSerial(text) {
  const digits = serialDigits(text);
  const padded = digits.length % 2 ? `0${digits}` : digits;
  return padded.match(/../g).join(" ");
}

/** What X.509 compares: upper-case hex without separators or leading zeros. */
export function serialDigits(text) {
  return (
    String(text || "")
      .replace(/[\s:]/g, "")
      .toUpperCase()
      .replace(/^0+/, "") || "0"
  );
}

/** An ISO 8601 moment as the dd/mm/yyyy day it was in Vietnam. */
export function vietnamDay(iso) {
  const time = Date.parse(iso || "");
  if (Number.isNaN(time)) return "—";
  const d = new Date(time + VIETNAM_MS);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(d.getUTCDate())}/${two(d.getUTCMonth() + 1)}/${d.getUTCFullYear()}`;
}

/** RFC 4514 attributes (type, value) with the escapes undone. */
export function subjectAttributes(subject) {
  const out = [];
  let type = "";
  let value = "";
  let inValue = false;
  const text = String(subject || "");
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i];
    if (char === "\\" && i + 1 < text.length) {
      const hex = text.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        // a UTF-8 byte: collect the run and decode it at once
        const bytes = [];
        while (text[i] === "\\" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
          bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
          i += 3;
        }
        i -= 1;
        const decoded = new TextDecoder().decode(new Uint8Array(bytes));
        if (inValue) value += decoded;
        else type += decoded;
      } else {
        i += 1;
        if (inValue) value += text[i];
        else type += text[i];
      }
    } else if (!inValue && char === "=") {
      inValue = true;
    } else if (char === "," || char === "+") {
      out.push([type.trim(), value]);
      type = "";
      value = "";
      inValue = false;
    } else if (inValue) {
      value += char;
    } else {
      type += char;
    }
  }
  if (type || value) out.push([type.trim(), value]);
  return out;
}

export function keyType(certificate) {
  if (certificate.key_type === "RSA" && certificate.key_size) {
    return `RSA-${certificate.key_size}`;
  }
  if (certificate.key_type === "EC") {
    return `ECDSA ${CURVES[certificate.curve] || certificate.curve || certificate.key_size || ""}`.trim();
  }
  return certificate.key_type || "—";
}

/** The facts a person compares: { organisation, tax_code, key_type, valid, serial }. */
export function certificateFacts(certificate) {
  const attributes = subjectAttributes(certificate.subject);
  const first = (name) => {
    const found = attributes.find(([type]) => type.toUpperCase() === name);
    return found ? found[1] : "";
  };
  let taxCode = "—";
  for (const [type, value] of attributes) {
    const match = /^\s*MST\s*:(.+)$/i.exec(value);
    if (type.toUpperCase() === "UID" && match && match[1].trim()) {
      taxCode = match[1].trim();
      break;
    }
  }
  return {
    organisation: first("O") || first("CN") || "—",
    tax_code: taxCode,
    key_type: keyType(certificate),
    valid:
      certificate.not_before || certificate.not_after
        ? `${vietnamDay(certificate.not_before)}–${vietnamDay(certificate.not_after)}`
        : "—",
    serial: formatSerial(certificate.serial),
    serial_hex: serialDigits(certificate.serial),
  };
}
