/**
 * Long-running commands (`geneprune dashboard`, `geneprune worker`) run until the user stops them: SIGINT
 * (Ctrl-C) or SIGTERM (a service manager) is their normal end, after which they close what they hold and exit 0.
 */

/** Resolves on the first SIGINT or SIGTERM, and stops listening for both. */
export function untilStopped(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
