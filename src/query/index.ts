export { type AuditQuery, type AuditRow, listAuditEvents } from './audit.js';
export { type FileQuery, type FileRow, findFiles, globToLike } from './files.js';
export {
  type HostHealthInput,
  type HostRow,
  type HostState,
  hostStates,
  judgeHost,
  LATE_AFTER_HEARTBEATS,
  listHosts,
  resolveHosts,
  SILENT_AFTER_HEARTBEATS,
} from './hosts.js';
export {
  describeEndpoint,
  type EndpointQuery,
  type EndpointRow,
  findEndpoints,
  formatAddress,
} from './net.js';
export { describeProcess, type ProcessRow, shellQuote } from './process-row.js';
export { findProcesses, type ProcessQuery } from './procs.js';
export { RECORDER_KINDS, type RecorderEvent, type RecorderKind } from './recorder-events.js';
export { firstKeyword, hasSecondStatement, runSql } from './sql.js';
export {
  type EndpointEvent,
  type FileEvent,
  type GapEvent,
  type ProcessEvent,
  TIMELINE_KINDS,
  type TimelineEvent,
  type TimelineKind,
  type TimelineQuery,
  timeline,
} from './timeline.js';
export { type TreeQuery, type TreeRow, treeAt } from './tree-at.js';
export { DEFAULT_LIMIT, type WindowOptions } from './window.js';
