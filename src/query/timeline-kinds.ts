import { ACTIVITY_KINDS } from './activity-events.js';
import { RECORDER_KINDS } from './recorder-events.js';

/** The kinds of timeline event, apart from the queries so the web front end can import them alone. */
export const TIMELINE_KINDS = Object.freeze([
  'process_start',
  'process_exec',
  'process_exit',
  'file_open',
  'file_close',
  'endpoint_open',
  'endpoint_state',
  'endpoint_close',
  'gap',
  ...ACTIVITY_KINDS,
  ...RECORDER_KINDS,
] as const);
export type TimelineKind = (typeof TIMELINE_KINDS)[number];
