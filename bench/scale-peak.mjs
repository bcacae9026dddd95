// Preloaded into the children of bench/scale.ts: reports the process's peak RSS on stderr as it exits.
process.on('exit', () => {
  process.stderr.write(`scale-peak-rss ${process.resourceUsage().maxRSS * 1024}\n`);
});
