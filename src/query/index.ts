export { type AlertRow, listAlerts } from './alerts.js';
export { type AuditQuery, type AuditRow, listAuditEvents } from './audit.js';
export { type FileQuery, type FileRow, findFiles, globToLike } from './files.js';
export {
  type ActivitySeries,
  activitySeries,
  type FleetHost,
  type FleetQuery,
  fleetOverview,
  type HostStatus,
  hostStatus,
  LATE_AFTER_US,
  SILENT_AFTER_US,
} from './fleet.js';
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
export {
  type NetworkCount,
  type NetworkSummary,
  type NetworkSummaryQuery,
  networkSummary,
} from './network-summary.js';
export { type BatchRef, execSequences, type ProcessDetail, processDetail } from './process-detail.js';
export { describeProcess, type ProcessRow, shellQuote } from './process-row.js';
export { findProcesses, type ProcessQuery } from './procs.js';
export { RECORDER_KINDS, type RecorderEvent, type RecorderKind } from './recorder-events.js';
export { SEARCH_KINDS, type SearchHit, type SearchKind, type SearchQuery, search } from './search.js';
export { firstKeyword, hasSecondStatement, runSql } from './sql.js';
export { type DiffSet, type DiffSide, type StateDiff, stateDiff } from './state-diff.js';
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
