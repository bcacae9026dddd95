/**
 * `geneprune generate | head -c 10` and `geneprune --help | head -1`: the reader going away is the user's
 * normal way of saying "enough", not a failure, so a broken pipe on stdout or stderr ends the process at once
 * with exit 0 and no stack trace. Node ignores SIGPIPE, so the only sign is an EPIPE 'error' on the stream.
 */
export function endQuietlyOnBrokenPipe(stream: NodeJS.WriteStream, exit: (code: number) => never): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') exit(0);
    throw err;
  });
}
