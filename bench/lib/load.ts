/** Drives a benchmark: request i is released at its arrival time (offset from the start), then
 * waits for a concurrency slot when a cap is set, as vLLM does (requests queue at the client
 * semaphore; their timing starts when they are sent). */

export class Semaphore {
  private free: number;
  private readonly waiters: (() => void)[] = [];

  constructor(slots: number) {
    this.free = slots;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LoadOptions<T> {
  arrivalsMs: number[];
  maxConcurrency: number | null;
  send: (index: number) => Promise<T>;
  onDone?: (index: number, result: T) => void;
}

export async function runLoad<T>(o: LoadOptions<T>): Promise<{ results: T[]; durationMs: number }> {
  const sem = o.maxConcurrency === null ? null : new Semaphore(o.maxConcurrency);
  const t0 = performance.now();
  const tasks: Promise<void>[] = [];
  const results: T[] = new Array(o.arrivalsMs.length);
  for (let i = 0; i < o.arrivalsMs.length; i++) {
    // Timers may fire a little early (libuv measures from its cached loop time): sleep again.
    for (
      let wait = t0 + o.arrivalsMs[i]! - performance.now();
      wait > 0;
      wait = t0 + o.arrivalsMs[i]! - performance.now()
    ) {
      await sleep(wait);
    }
    tasks.push(
      (async () => {
        await sem?.acquire();
        try {
          results[i] = await o.send(i);
          o.onDone?.(i, results[i]!);
        } finally {
          sem?.release();
        }
      })(),
    );
  }
  await Promise.all(tasks);
  return { results, durationMs: performance.now() - t0 };
}
