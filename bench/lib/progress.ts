/** Progress on stderr while a benchmark runs (stdout stays clean for the result table): one line
 * rewritten in place on a terminal; on a pipe or CI log, a plain line every tenth of the way. */

export class Progress {
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private lastTenth = -1;
  private done = 0;
  private failed = 0;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  tick(ok: boolean): void {
    this.done++;
    if (!ok) this.failed++;
    const now = performance.now();
    if (this.stream.isTTY) {
      // At most ~10 redraws a second: drawing is not free and the client is being measured.
      if (now - this.lastDraw < 100 && this.done < this.total) return;
      this.lastDraw = now;
      this.stream.write(`\r\x1b[2K${this.line(now)}`);
    } else {
      const tenth = Math.floor((10 * this.done) / this.total);
      if (tenth === this.lastTenth) return;
      this.lastTenth = tenth;
      this.stream.write(`${this.line(now)}\n`);
    }
  }

  finish(): void {
    if (this.stream.isTTY) this.stream.write(`\r\x1b[2K${this.line(performance.now())}\n`);
  }

  private line(now: number): string {
    const width = 24;
    const filled = Math.round((width * this.done) / Math.max(1, this.total));
    const s = (now - this.t0) / 1000;
    return (
      `${this.label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${this.done}/${this.total}` +
      ` failed ${this.failed}  ${s.toFixed(1)} s  ${(this.done / Math.max(s, 1e-9)).toFixed(1)} req/s`
    );
  }
}
