// check.js: AWS's own Greengrass IPC client (npm aws-iot-device-sdk-v2,
// greengrasscoreipc on aws-crt's native event-stream) against the test
// nucleus. Driven by main.go: it reads the environment the nucleus gives a
// component, writes one JSON event per line on stdout, and waits for "go"
// lines on stdin where main.go has to act in between. Never prints payloads'
// content, only their SHA-256 (notifications carry tokens).
'use strict';
const crypto = require('crypto');
const readline = require('readline');
const { greengrasscoreipc, eventstream_rpc } = require('aws-iot-device-sdk-v2');
const { QOS } = greengrasscoreipc.model;

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const thing = env('AWS_IOT_THING_NAME');
const notifyTopic = `$aws/things/${thing}/tunnels/notify`;
const deniedTopic = env('GGSDK_DENIED_TOPIC');
const auditTopic = env('GGSDK_AUDIT_TOPIC');
const expect = Number(env('GGSDK_EXPECT_MESSAGES'));

const emit = (event, fields) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
const sha = (buf) => crypto.createHash('sha256').update(Buffer.from(buf)).digest('hex');
const errorShape = (e) => ({
  name: e && e.constructor && e.constructor.name,
  type: e && eventstream_rpc.RpcErrorType[e.type],
  description: e && e.description,
  serviceError: e && e.serviceError,
});

const lines = readline.createInterface({ input: process.stdin });
const pending = [];
lines.on('line', (l) => { const w = pending.shift(); if (w) w(l); });
const waitGo = () => new Promise((resolve) => pending.push(resolve));

async function denied(what, fn) {
  try {
    await fn();
    emit('allowed', { what });
  } catch (e) {
    emit('denied', { what, ...errorShape(e) });
  }
}

async function main() {
  // A wrong SVCUID: the official client must report a handshake failure.
  const bad = greengrasscoreipc.createClient({
    ...greengrasscoreipc.createDefaultClientConfig(),
    connectTransform: async (o) => ({ ...o.message, payload: JSON.stringify({ authToken: 'not-a-svcuid' }) }),
  });
  await denied('connect with a wrong SVCUID', () => bad.connect());
  await bad.close();

  const client = greengrasscoreipc.createClient(); // SVCUID and socket from the environment
  await client.connect();
  emit('connected', {});

  let got = 0;
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  const sub = client.subscribeToIoTCore({ topicName: notifyTopic, qos: QOS.AT_LEAST_ONCE });
  sub.on('message', (m) => {
    emit('message', { topic: m.message.topicName, sha256: sha(m.message.payload), bytes: Buffer.from(m.message.payload).length });
    if (++got === expect) done();
  });
  sub.on('streamError', (e) => emit('streamError', errorShape(e)));
  sub.on('ended', () => emit('ended', {}));
  await sub.activate();
  emit('subscribed', { topic: notifyTopic });
  await all;

  await denied(`SubscribeToIoTCore ${deniedTopic}`, async () => {
    const op = client.subscribeToIoTCore({ topicName: deniedTopic, qos: QOS.AT_LEAST_ONCE });
    await op.activate();
  });

  const body = Buffer.from(JSON.stringify({ event: 'sdk-check', at: new Date().toISOString() }));
  await client.publishToIoTCore({ topicName: auditTopic, qos: QOS.AT_LEAST_ONCE, payload: body });
  emit('published', { topic: auditTopic, sha256: sha(body), bytes: body.length });
  await waitGo();

  await denied(`PublishToIoTCore ${notifyTopic}`, () =>
    client.publishToIoTCore({ topicName: notifyTopic, qos: QOS.AT_LEAST_ONCE, payload: body }));

  sub.removeAllListeners('ended'); // from here on, the end is ours
  await sub.close(); // TerminateStream from the client
  await client.close();
  emit('done', {});
  lines.close();
}

main().catch((e) => {
  emit('fatal', { message: String(e && e.stack || e), ...errorShape(e) });
  process.exit(1);
});
