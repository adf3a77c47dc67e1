import { InvalidOptionsError } from '@amps-ts/core-protocol';

export function pathOption(path: unknown): string {
  if (typeof path !== 'string' || path === '') {
    throw new InvalidOptionsError(`the store's path must be a non-empty string, got ${String(path)}`);
  }
  return path;
}

export function booleanOption(value: unknown, name: string): boolean {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new InvalidOptionsError(`${name} must be a boolean, got ${String(value)}`);
  }
  return value ?? false;
}
