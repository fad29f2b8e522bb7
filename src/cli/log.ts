import { pino } from 'pino';

export type Log = (msg: string, fields?: object) => void;

/**
 * Logs go to stderr (stdout is for results only), as JSON lines an operator can ship anywhere; or,
 * for the forced commands of OpenSSH mode, whose stderr is the client's, appended to `file`.
 */
export function createLog(opts: { quiet?: boolean; name: string; file?: string }): Log {
  const logger = pino(
    { name: opts.name, level: opts.quiet ? 'warn' : (process.env.POFR_LOG_LEVEL ?? 'info') },
    opts.file === undefined
      ? pino.destination(2)
      : pino.destination({ dest: opts.file, append: true, sync: true, mkdir: true }),
  );
  return (msg, fields) => {
    const isProblem = /fail|refus|error|lost|revoked|changed/i.test(msg);
    if (isProblem) logger.warn(fields ?? {}, msg);
    else logger.info(fields ?? {}, msg);
  };
}
