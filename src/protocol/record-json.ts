import type { PofrRecord } from './records.js';

/**
 * The JSON text of a record, made once. A record goes to the crash journal in the cycle it is made
 * and into its batch at the seal a few seconds later; serialising it twice was a sixth of the
 * recorder's CPU under an exec storm. Records are never changed once made, so the text stays
 * true; a WeakMap lets the text go with its record.
 */
const texts = new WeakMap<PofrRecord, string>();

export function recordJson(record: PofrRecord): string {
  let text = texts.get(record);
  if (text === undefined) {
    text = JSON.stringify(record);
    texts.set(record, text);
  }
  return text;
}
