/**
 * A `startTestCluster` in a child process, driven over IPC: the HA benchmarks' brokers.
 *
 * Why a child process: the brokers then neither share the clients' event loop nor their CPU (this
 * machine has two cores: one for the clients, one for the brokers), and a `kill()` happens in
 * another process, as a crash does, so the clients see it only as their sockets closing. Forked
 * like `benches/broker.ts` (worker threads cannot load TypeScript under tsx on Node 20).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startTestCluster, type TestClusterOptions } from '@amps-ts/test-server';

const ROLE = 'AMPS_TS_BENCH_CLUSTER';

type Operation = 'kill' | 'restart' | 'freeze' | 'thaw' | 'linked' | 'close';
interface Request {
  id: number;
  op: Operation;
  index: number;
}
interface Reply {
  id: number;
  error?: string;
}

/* ---------- the child process ---------- */

const childOptions = process.env[ROLE];
if (childOptions !== undefined && process.send) {
  const cluster = await startTestCluster(JSON.parse(childOptions) as TestClusterOptions);
  // The parent went away (it crashed or was interrupted): do not outlive it.
  process.on('disconnect', () => {
    void cluster.close().finally(() => process.exit(0));
  });
  process.on('message', async ({ id, op, index }: Request) => {
    const server = cluster.servers[index];
    let error: string | undefined;
    try {
      if (op === 'linked') await cluster.linked();
      else if (op === 'close') await cluster.close();
      else if (!server) throw new Error(`no broker ${index}`);
      else if (op === 'kill') await server.kill();
      else if (op === 'restart') await server.restart();
      else if (op === 'freeze') server.freeze();
      else server.thaw();
    } catch (e) {
      error = String(e);
    }
    process.send?.({ id, error } satisfies Reply);
    if (op === 'close') process.disconnect();
  });
  process.send({ uris: cluster.tcpUris() });
}

/* ---------- the driving side ---------- */

export class ClusterProcess {
  #nextId = 0;
  readonly #pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

  private constructor(
    /** One TCP URI per broker, in order. */
    readonly uris: readonly string[],
    readonly child: ChildProcess,
  ) {
    child.on('message', (reply: Reply) => {
      const pending = this.#pending.get(reply.id);
      this.#pending.delete(reply.id);
      if (reply.error === undefined) pending?.resolve();
      else pending?.reject(new Error(`broker process: ${reply.error}`));
    });
  }

  static async start(options: TestClusterOptions): Promise<ClusterProcess> {
    const child = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, [ROLE]: JSON.stringify(options) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const [ready] = (await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(([code]) => {
        throw new Error(`the broker process exited with code ${code} before it was ready`);
      }),
    ])) as [{ uris: string[] }];
    return new ClusterProcess(ready.uris, child);
  }

  #call(op: Operation, index = -1): Promise<void> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.child.send({ id, op, index } satisfies Request);
    });
  }

  /** Like a crash: the broker's sockets are destroyed; its data stays for `restart`. */
  kill(index: number): Promise<void> {
    return this.#call('kill', index);
  }

  restart(index: number): Promise<void> {
    return this.#call('restart', index);
  }

  /** Half-open: connections stay open, nothing is read or written. */
  freeze(index: number): Promise<void> {
    return this.#call('freeze', index);
  }

  thaw(index: number): Promise<void> {
    return this.#call('thaw', index);
  }

  /** Resolves once every running broker's replication links are up. */
  linked(): Promise<void> {
    return this.#call('linked');
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    await this.#call('close').catch(() => {});
    await exited;
  }
}
