import { type Message, MessageDecoder } from '../src/index.js';

const utf8 = new TextEncoder();

/** A length-prefixed frame from header text (or bytes) and an optional body. */
export function frame(header: string | Uint8Array, body: string | Uint8Array = ''): Uint8Array {
  const head = typeof header === 'string' ? utf8.encode(header) : header;
  const data = typeof body === 'string' ? utf8.encode(body) : body;
  const out = new Uint8Array(4 + head.length + data.length);
  new DataView(out.buffer).setUint32(0, head.length + data.length);
  out.set(head, 4);
  out.set(data, 4 + head.length);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Every message decoded from the chunks, in order. */
export function decodeAll(...chunks: Uint8Array[]): Message[] {
  const out: Message[] = [];
  const decoder = new MessageDecoder((m) => out.push(m));
  for (const chunk of chunks) decoder.push(chunk);
  return out;
}

/** The one message a header (and body) decodes to. */
export function decodeOne(header: string, body = ''): Message {
  const messages = decodeAll(frame(header, body));
  if (messages.length !== 1) throw new Error(`expected one message, got ${messages.length}`);
  return messages[0] as Message;
}

export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

/** The JSON header of an encoded frame, as text (found by tracking strings, not by the first `}`). */
export function headerOf(encoded: Uint8Array): string {
  const all = text(encoded.subarray(4));
  let inString = false;
  for (let i = 0; i < all.length; i++) {
    const c = all[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '}') {
      return all.slice(0, i + 1);
    }
  }
  throw new Error('no header');
}
