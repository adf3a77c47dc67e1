/**
 * Page entry for the browser tests: drives `browserTransport` in Chromium and exposes a small
 * API on `globalThis.ampsTest` that the tests call through `page.evaluate`. Bytes cross the
 * page boundary as hex strings.
 */
import { AmpsError, type TransportHint } from '@amps-ts/core-protocol';
import { type BrowserConnection, type BrowserTransportOptions, browserTransport } from '../../src/index.js';

export interface ErrorInfo {
  name: string;
  code: string | undefined;
  message: string;
}

function errorInfo(error: unknown): ErrorInfo | null {
  if (error === undefined || error === null) return null;
  const e = error as Error;
  return { name: e.name, code: AmpsError.isInstance(e) ? e.code : undefined, message: e.message };
}

const toHex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** A frame of `length` body bytes with the pattern `i & 0xff`. */
function patternFrame(length: number): Uint8Array {
  const out = new Uint8Array(4 + length);
  new DataView(out.buffer).setUint32(0, length);
  for (let i = 0; i < length; i++) out[4 + i] = i & 0xff;
  return out;
}

class Session {
  chunks: Uint8Array[] = [];
  length = 0;
  closes: Array<ErrorInfo | null> = [];
  afterClose = 0;
  #wake: Array<() => void> = [];
  connection!: BrowserConnection;

  onData = (chunk: Uint8Array) => {
    if (this.closes.length > 0) this.afterClose++;
    this.chunks.push(chunk.slice());
    this.length += chunk.length;
    for (const wake of this.#wake.splice(0)) wake();
  };

  onClose = (error?: Error) => {
    this.closes.push(errorInfo(error));
    for (const wake of this.#wake.splice(0)) wake();
  };

  async until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((resolve) => this.#wake.push(resolve));
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

const sessions = new Map<number, Session>();
let nextId = 1;
const session = (id: number) => {
  const s = sessions.get(id);
  if (!s) throw new Error(`no session ${id}`);
  return s;
};

const hintLog: string[] = [];
const hintSubscriptions = new Map<number, () => void>();
let transport = browserTransport();

export const api = {
  /** Replaces the transport (new options). */
  useTransport(options: Omit<BrowserTransportOptions, 'WebSocket' | 'page' | 'logger'>): void {
    transport = browserTransport(options);
  },

  async connect(
    uri: string,
    options: { timeoutMs?: number; abortAfterMs?: number; abortBefore?: boolean } = {},
  ): Promise<{ id: number; description: string; highWaterMark: number } | { error: ErrorInfo | null }> {
    const s = new Session();
    const controller = new AbortController();
    if (options.abortBefore) controller.abort();
    if (options.abortAfterMs !== undefined) setTimeout(() => controller.abort(), options.abortAfterMs);
    try {
      s.connection = await transport.connect(uri, s, { timeoutMs: options.timeoutMs, signal: controller.signal });
    } catch (error) {
      return { error: errorInfo(error) };
    }
    const id = nextId++;
    sessions.set(id, s);
    return { id, description: s.connection.description, highWaterMark: s.connection.highWaterMark };
  },

  send(id: number, hex: string): void {
    session(id).connection.send(fromHex(hex));
  },

  /** Sends one frame of `length` pattern bytes. */
  sendPattern(id: number, length: number): void {
    session(id).connection.send(patternFrame(length));
  },

  async waitForBytes(id: number, n: number): Promise<string> {
    const s = session(id);
    await s.until(() => s.length >= n || s.closes.length > 0);
    return toHex(s.bytes());
  },

  /** Waits for one pattern frame of `length` body bytes and says whether it arrived intact. */
  async receivedPattern(id: number, length: number): Promise<{ intact: boolean; chunks: number }> {
    const s = session(id);
    await s.until(() => s.length >= 4 + length || s.closes.length > 0);
    const bytes = s.bytes();
    const expected = patternFrame(length);
    return {
      intact: bytes.length === expected.length && bytes.every((b, i) => b === expected[i]),
      chunks: s.chunks.length,
    };
  },

  /**
   * Sends pattern frames, yielding to the event loop, until `bufferedAmount` passes the
   * high-water mark, then `extraBytes` more: the browser keeps moving bytes into the kernel's
   * socket buffers for a while, and the extra keeps the count above the low-water mark until
   * the server reads.
   */
  async fillPastHighWaterMark(id: number, frameLength: number, maxFrames: number, extraBytes: number) {
    const c = session(id).connection;
    let frames = 0;
    while (c.bufferedAmount <= c.highWaterMark && frames < maxFrames) {
      c.send(patternFrame(frameLength));
      frames++;
      await tick();
    }
    for (let sent = 0; sent < extraBytes; sent += frameLength) {
      c.send(patternFrame(frameLength));
      frames++;
    }
    return { frames, buffered: c.bufferedAmount, highWaterMark: c.highWaterMark, lowWaterMark: c.lowWaterMark };
  },

  drainState: new Map<number, boolean>(),

  /** Starts waiting for `whenDrained()`; `isDrained` reports it. */
  startDrainWait(id: number): void {
    api.drainState.set(id, false);
    void session(id)
      .connection.whenDrained()
      .then(() => api.drainState.set(id, true));
  },

  isDrained(id: number): { drained: boolean | undefined; buffered: number } {
    return { drained: api.drainState.get(id), buffered: session(id).connection.bufferedAmount };
  },

  /** Resolves once `whenDrained()` does, with `bufferedAmount` then. */
  async whenDrained(id: number): Promise<number> {
    const c = session(id).connection;
    await c.whenDrained();
    return c.bufferedAmount;
  },

  bufferedAmount(id: number): number {
    return session(id).connection.bufferedAmount;
  },

  close(id: number, errorMessage?: string): void {
    session(id).connection.close(errorMessage === undefined ? undefined : new Error(errorMessage));
  },

  async waitForClose(id: number): Promise<{ closes: Array<ErrorInfo | null>; dataAfterClose: number }> {
    const s = session(id);
    await s.until(() => s.closes.length > 0);
    await tick(); // a second onClose, if there were one, would come by now
    return { closes: s.closes, dataAfterClose: s.afterClose };
  },

  hints: {
    log: hintLog,
    subscribe(name: string, options: { throws?: boolean } = {}): number {
      const token = nextId++;
      hintSubscriptions.set(
        token,
        transport.onHint((hint: TransportHint) => {
          hintLog.push(`${name}:${hint}`);
          if (options.throws) throw new Error(`listener ${name} failed`);
        }),
      );
      return token;
    },
    unsubscribe(token: number): void {
      hintSubscriptions.get(token)?.();
      hintSubscriptions.delete(token);
    },
    /** Dispatches a page event the way the browser would. */
    dispatch(event: 'online' | 'offline' | 'pagehide' | 'visible' | 'hidden' | 'pageshow' | 'load-pageshow'): void {
      if (event === 'visible' || event === 'hidden') {
        Object.defineProperty(document, 'visibilityState', { value: event, configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
      } else if (event === 'pageshow' || event === 'load-pageshow') {
        // Restored from the back/forward cache (persisted), or shown by a first load.
        window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: event === 'pageshow' }));
      } else {
        window.dispatchEvent(new Event(event));
      }
    },
    take(): string[] {
      return hintLog.splice(0);
    },
  },
};

export type PageApi = typeof api;

(globalThis as unknown as { ampsTest: PageApi }).ampsTest = api;
(globalThis as { __entryLoaded?: boolean }).__entryLoaded = true;
