/**
 * Progress for long work: a redrawn bar on a TTY, plain periodic lines otherwise (logs, CI).
 * Always writes to stderr so that `--json` output on stdout stays clean.
 */
export interface ProgressOptions {
  /** What is being counted, e.g. "images". */
  unit?: string;
  /** Minimum seconds between plain lines when stderr is not a TTY. */
  lineEverySeconds?: number;
  stream?: NodeJS.WriteStream;
  /** Silence everything (tests, --quiet). */
  quiet?: boolean;
}

export class Progress {
  private done = 0;
  private readonly start = Date.now();
  private lastDraw = 0;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private extra = '';
  private finished = false;

  constructor(
    private readonly label: string,
    private readonly total: number | undefined,
    private readonly opts: ProgressOptions = {},
  ) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  /** Free text shown after the counters (running losses, for example). */
  status(text: string): void {
    this.extra = text;
  }

  tick(n = 1): void {
    this.done += n;
    this.draw(false);
  }

  finish(text?: string): void {
    if (this.finished) return;
    this.finished = true;
    if (text !== undefined) this.extra = text;
    this.draw(true);
    if (this.tty && !this.opts.quiet) this.stream.write('\n');
  }

  get count(): number {
    return this.done;
  }

  rate(): number {
    const s = (Date.now() - this.start) / 1000;
    return s > 0 ? this.done / s : 0;
  }

  private draw(force: boolean): void {
    if (this.opts.quiet) return;
    const now = Date.now();
    const every = this.tty ? 100 : (this.opts.lineEverySeconds ?? 10) * 1000;
    if (!force && now - this.lastDraw < every) return;
    this.lastDraw = now;
    const unit = this.opts.unit ?? 'items';
    const rate = this.rate();
    const counts = this.total !== undefined ? `${this.done}/${this.total}` : `${this.done}`;
    const elapsed = formatSeconds((now - this.start) / 1000);
    let eta = '';
    if (this.total !== undefined && rate > 0 && this.done < this.total) {
      eta = ` eta ${formatSeconds((this.total - this.done) / rate)}`;
    }
    const tail = `${counts} ${unit} ${rate.toFixed(1)} ${unit}/s ${elapsed}${eta}${this.extra ? ' ' + this.extra : ''}`;
    if (this.tty) {
      const width = 24;
      const frac = this.total ? Math.min(1, this.done / this.total) : 0;
      const filled = Math.round(frac * width);
      const bar = this.total !== undefined ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
      this.stream.write(`\r\x1b[2K${this.label} ${bar}${tail}`);
    } else {
      this.stream.write(`${this.label}: ${tail}\n`);
    }
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
