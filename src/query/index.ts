export { type FileQuery, type FileRow, findFiles, globToLike } from './files.js';
export { type HostRow, listHosts, resolveHosts } from './hosts.js';
export {
  describeEndpoint,
  type EndpointQuery,
  type EndpointRow,
  findEndpoints,
  formatAddress,
} from './net.js';
export { describeProcess, type ProcessRow, shellQuote } from './process-row.js';
export { findProcesses, type ProcessQuery } from './procs.js';
export { firstKeyword, hasSecondStatement, runSql } from './sql.js';
export {
  cursorOf,
  type EndpointEvent,
  type FileEvent,
  type GapEvent,
  type ProcessEvent,
  TIMELINE_KINDS,
  type TimelineCursor,
  type TimelineEvent,
  type TimelineKind,
  type TimelineQuery,
  timeline,
} from './timeline.js';
export { type TreeQuery, type TreeRow, treeAt } from './tree-at.js';
export { DEFAULT_LIMIT, type WindowOptions } from './window.js';
