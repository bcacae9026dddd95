#!/usr/bin/env node
import { endQuietlyOnBrokenPipe } from './pipes.js';
import { main } from './program.js';

endQuietlyOnBrokenPipe(process.stdout, process.exit);
endQuietlyOnBrokenPipe(process.stderr, process.exit);
main(process.argv).then((code) => {
  process.exitCode = code;
});
