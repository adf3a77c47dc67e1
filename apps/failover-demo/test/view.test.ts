import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { ChaosEvent } from '../src/chaos.js';
import { liveView } from '../src/view.js';

const state = (s: 'Connected' | 'Disconnected' | 'Resubscribed'): ChaosEvent => ({
  type: 'state',
  at: 1234,
  client: 'publisher',
  state: s,
  server: 'B',
});

describe('the live view', () => {
  it.each([false, true])('keeps the server column aligned (colour: %s)', (color) => {
    const view = liveView(color);
    const lines = (['Connected', 'Disconnected', 'Resubscribed'] as const).map((s) =>
      stripVTControlCharacters(view.event(state(s))),
    );
    expect(lines).toEqual([
      '  1.23s  publisher    Connected          B',
      '  1.23s  publisher    Disconnected       B',
      '  1.23s  publisher    Resubscribed       B',
    ]);
  });

  it('writes no colour codes when colour is off', () => {
    const view = liveView(false);
    const text = view.event({ type: 'chaos', at: 0, action: 'kill', server: 'A', hits: ['subscriber'] });
    expect(text).toBe('  0.00s  chaos     kill    A (subscriber on it)');
  });
});
