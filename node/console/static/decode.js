// Record keys, values and headers: base64 from the API, shown as JSON, UTF-8 text or hex.

export const MODES = ['auto', 'json', 'text', 'hex'];

export function fromBase64(b64) {
  if (b64 === null || b64 === undefined) return null;
  const raw = atob(b64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function toBase64(text) {
  const bytes = new TextEncoder().encode(text);
  let raw = '';
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw);
}

function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

function utf8(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

function json(text) {
  if (text === null) return null;
  try {
    return JSON.stringify(JSON.parse(text), null, 1).replace(/\n\s*/g, ' ');
  } catch {
    return null;
  }
}

// {text, as}: how `bytes` reads in `mode` ('auto' picks JSON, else text, else hex); null bytes -> null text.
export function decode(bytes, mode) {
  if (bytes === null) return { text: null, as: 'null' };
  const text = utf8(bytes);
  if (mode === 'hex') return { text: hex(bytes), as: 'hex' };
  if (mode === 'json') {
    const parsed = json(text);
    return parsed === null ? { text: hex(bytes), as: 'hex (not JSON)' } : { text: parsed, as: 'json' };
  }
  if (mode === 'text') return text === null ? { text: hex(bytes), as: 'hex (not UTF-8)' } : { text, as: 'text' };
  const parsed = json(text);
  if (parsed !== null) return { text: parsed, as: 'json' };
  if (text !== null) return { text, as: 'text' };
  return { text: hex(bytes), as: 'hex' };
}
