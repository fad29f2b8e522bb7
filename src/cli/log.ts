import { pino } from 'pino';

export type Log = (msg: string, fields?: object) => void;

/** Logs go to stderr (stdout is for results only), as JSON lines an operator can ship anywhere. */
export function createLog(opts: { quiet?: boolean; name: string }): Log {
  const logger = pino(
    { name: opts.name, level: opts.quiet ? 'warn' : (process.env.POFR_LOG_LEVEL ?? 'info') },
    pino.destination(2),
  );
  return (msg, fields) => {
    const isProblem = /fail|refus|error|lost|revoked|changed/i.test(msg);
    if (isProblem) logger.warn(fields ?? {}, msg);
    else logger.info(fields ?? {}, msg);
  };
}
