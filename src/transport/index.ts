export { type ByteChannel, stdioByteChannel } from './byte-channel.js';
export { type AuthKey, type EnrollChannelOptions, serveEnrollChannel } from './enroll-channel.js';
export { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from './framing.js';
export {
  DEFAULT_INGEST_LIMITS,
  type IngestChannelHandle,
  type IngestChannelLimits,
  type IngestChannelOptions,
  serveIngestChannel,
} from './ingest-channel.js';
export {
  type BatchAck,
  batchAckSchema,
  ENROLL_COMMAND,
  ENROLL_USER,
  type EnrollReply,
  type EnrollRequest,
  enrollReplySchema,
  enrollRequestSchema,
  INGEST_COMMAND,
} from './messages.js';
export type { PeerContext, TransportLog } from './peer.js';
export {
  formatRemote,
  type RefusalSink,
  type TransportRefusal,
  type TransportRefusalKind,
} from './refusals.js';
export {
  BatchUploader,
  type BatchUploaderOptions,
  type EnrollOverSshOptions,
  enrollOverSsh,
  type UploaderStatus,
  type UploadQueue,
} from './ssh-client.js';
export {
  generateSshKeyPair,
  normalizeFingerprint,
  publicKeyBlob,
  type SshKeyPair,
  sshFingerprint,
  sshKeyPairOf,
} from './ssh-keys.js';
export {
  type AuthDecision,
  type ConnectionLimits,
  DEFAULT_CONNECTION_LIMITS,
  type ServerHandlers,
  type SshServer,
  type SshServerOptions,
  startSshServer,
} from './ssh-server.js';
