/** Progress lines on stderr: redrawn in place on a terminal, a line every few seconds otherwise. */

export interface ProgressLine {
  update(text: string): void;
  done(): void;
}

export function progressLine(stream: NodeJS.WriteStream = process.stderr, quiet = false): ProgressLine {
  const tty = stream.isTTY === true;
  let last = Date.now();
  let shown = false;
  return {
    update(text) {
      if (quiet) return;
      const now = Date.now();
      if (tty) {
        stream.write(`\r\x1b[2K${text}`);
        shown = true;
      } else if (now - last > 5000) {
        stream.write(`${text}\n`);
        last = now;
      }
    },
    done() {
      if (tty && shown) stream.write('\r\x1b[2K');
      shown = false;
    },
  };
}
