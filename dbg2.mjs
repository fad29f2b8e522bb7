import ssh2 from 'ssh2';
import { generateSshKeyPair } from './dist/src/transport/index.js';
import { startOpensshServer } from './dist/test/helpers/openssh-server.js';

const s = await startOpensshServer('/tmp/nonexist');
const k = generateSshKeyPair();
const c = new ssh2.Client();
c.on('error', (e) => console.log('ERR', e.message, e.level));
c.on('close', () => console.log('close'));
c.on('ready', () => console.log('ready'));
c.connect({
  host: '127.0.0.1',
  port: s.port,
  username: 'root',
  privateKey: k.privateKey,
  hostVerifier: () => true,
  debug: (m) => {
    if (/kex|Handshake|DEBUG: Parser/i.test(m)) console.log(m);
  },
});
await new Promise((r) => setTimeout(r, 3000));
console.log(s.log());
await s.stop();
