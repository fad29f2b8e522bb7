export { encodeFrame, FrameDecoder, MAX_FRAME_BYTES } from './framing.js';
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
  type AuthKey,
  type ServerHandlers,
  type SshServer,
  type SshServerOptions,
  startSshServer,
  type TransportLog,
} from './ssh-server.js';
