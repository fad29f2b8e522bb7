import { type Command, CommanderError } from 'commander';
import { isPofrError } from '../errors.js';

/**
 * Parses and runs one command line; the only place that sets the exit status: 0 ok, 1 failure
 * (one line naming the program), 2 bad usage. Shared by `pofr` and the single-file `pofr-client`.
 */
export async function runCli(program: Command, argv: readonly string[]): Promise<void> {
  const name = program.name();
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
  }
  try {
    await program.exitOverride().parseAsync(argv as string[]);
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are "errors" to commander; they already printed.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    if (isPofrError(e)) {
      process.stderr.write(`${name}: ${e.message}\n`);
      process.exitCode = e.code === 'POFR_USAGE' || e.code === 'POFR_TIME_FORMAT' ? 2 : 1;
      return;
    }
    process.stderr.write(
      `${name}: unexpected error (a bug; please report it with this trace):\n${(e as Error).stack ?? String(e)}\n`,
    );
    process.exitCode = 1;
  }
}
