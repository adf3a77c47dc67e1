/*
 * What the encoders refuse, in one place: both builds of the encoder, the Client's outbox and
 * `checkEncodable` throw these errors.
 */
import { InvalidOptionsError } from './errors.js';
import { headerFields } from './fields.js';
import { fieldByKey } from './header-common.js';
import type { Command } from './message.js';

export const refusals = {
  commandName: (value: unknown): InvalidOptionsError =>
    new InvalidOptionsError(`command must be a command name, got ${String(value)}`),
  number: (name: string, value: unknown): InvalidOptionsError =>
    new InvalidOptionsError(`header field ${name} must be a non-negative safe integer, got ${String(value)}`),
  data: (): InvalidOptionsError => new InvalidOptionsError('command data must be a Uint8Array or a string'),
  knownHeader: (key: string): InvalidOptionsError =>
    new InvalidOptionsError(`header '${key}' is a known field: set it as a property of the command`),
  headerValue: (key: string): InvalidOptionsError =>
    new InvalidOptionsError(`header '${key}' must be a string, a finite number or a boolean`),
};

/** A value a number header field can carry. */
export function isHeaderNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** A value an extra header (`headers`) can carry. */
export function isHeaderValue(value: unknown): boolean {
  return (
    typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))
  );
}

const numberFields = headerFields.filter((f) => f.type === 'number').map((f) => f.name);

/**
 * Throws the `InvalidOptionsError` that `encodeCommand` would throw for `command`, without
 * encoding it: for a caller that must know before it keeps a command, such as a publish store
 * (kept, a command the encoder refuses would fail every replay).
 */
export function checkEncodable(command: Command): void {
  const name = command.command;
  if (typeof name !== 'string' || (name as string) === '') throw refusals.commandName(name);
  for (const field of numberFields) {
    const value = command[field];
    if (value !== undefined && value !== null && !isHeaderNumber(value)) throw refusals.number(field, value);
  }
  const headers = command.headers ?? {};
  for (const key in headers) {
    const value = headers[key];
    if (value === undefined) continue;
    if (fieldByKey.has(key)) throw refusals.knownHeader(key);
    if (!isHeaderValue(value)) throw refusals.headerValue(key);
  }
  const data = command.data;
  if (data !== undefined && typeof data !== 'string' && !(data instanceof Uint8Array)) throw refusals.data();
}
