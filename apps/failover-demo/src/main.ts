// Placeholder until the failover demo lands (issue 6): shows the codec round trip, the one part that exists.
import { encodeCommand, MessageDecoder } from '@amps-ts/core-protocol';

const frame = encodeCommand({ command: 'publish', topic: 'orders', sequence: 1, data: '{"id":1,"qty":500}' });
new MessageDecoder((m) => console.log('decoded', m.toJSON(), m.json())).push(frame);
console.log('The failover demo is not built yet: this run only shows the protocol codec.');
