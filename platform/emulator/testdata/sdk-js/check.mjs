// check.mjs drives the official AWS SDK for JavaScript v3 IoT Secure
// Tunneling client, unchanged, against a running tunnel emulator and checks
// all eight operations. Run by ../../sdkcompat_test.go; by hand:
//
//   EMULATOR_API_URL=http://127.0.0.1:8440 EMULATOR_MAX_OPEN_TUNNELS=10 node check.mjs
//
// Environment:
//   EMULATOR_API_URL           control-plane endpoint (required)
//   EMULATOR_MAX_OPEN_TUNNELS  the emulator's --max-open-tunnels (required; keep it small, e.g. 10)
//   EMULATOR_ACCOUNT_ID        account id in ARNs (default 123456789012)
//   EMULATOR_ACCESS_KEY_ID     access key id the emulator knows (its --credentials file)
//   EMULATOR_SECRET_ACCESS_KEY its secret; the emulator verifies every signature
//
// Prints one JSON line {"ok":…,"sdkVersion":…,"checks":[{"name","ok","error"?,"detail"?}]}
// on stdout; every failed check is also named on stderr, and the exit status
// is 1 when any check failed.
import { createRequire } from "node:module";
import { isDeepStrictEqual } from "node:util";
import {
  CloseTunnelCommand,
  DescribeTunnelCommand,
  IoTSecureTunnelingClient,
  IoTSecureTunnelingServiceException,
  LimitExceededException,
  ListTagsForResourceCommand,
  ListTunnelsCommand,
  OpenTunnelCommand,
  ResourceNotFoundException,
  RotateTunnelAccessTokenCommand,
  TagResourceCommand,
  UntagResourceCommand,
  paginateListTunnels,
} from "@aws-sdk/client-iotsecuretunneling";

const endpoint = process.env.EMULATOR_API_URL;
const maxOpen = Number(process.env.EMULATOR_MAX_OPEN_TUNNELS);
const account = process.env.EMULATOR_ACCOUNT_ID || "123456789012";
const region = "us-east-1";
const accessKeyId = process.env.EMULATOR_ACCESS_KEY_ID;
const secretAccessKey = process.env.EMULATOR_SECRET_ACCESS_KEY;
if (!endpoint || !Number.isInteger(maxOpen) || maxOpen < 1 || !accessKeyId || !secretAccessKey) {
  console.error("set EMULATOR_API_URL, EMULATOR_MAX_OPEN_TUNNELS (a small positive integer), " +
    "EMULATOR_ACCESS_KEY_ID and EMULATOR_SECRET_ACCESS_KEY");
  process.exit(2);
}
// A hung request must not hang the Go test: give up after 45 s.
setTimeout(() => {
  console.error("check.mjs: timed out after 45s");
  process.exit(3);
}, 45_000).unref();

const sdkVersion = createRequire(import.meta.url)("@aws-sdk/client-iotsecuretunneling/package.json").version;
const client = new IoTSecureTunnelingClient({
  endpoint,
  region,
  credentials: { accessKeyId, secretAccessKey },
  maxAttempts: 1, // surface the first answer; no retries hiding a 5xx
});
const send = (cmd) => client.send(cmd);

class CheckError extends Error {}
function assert(cond, msg) {
  if (!cond) throw new CheckError(msg);
}
function eq(got, want, what) {
  assert(isDeepStrictEqual(got, want), `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}
function isDate(v, what) {
  assert(v instanceof Date && !Number.isNaN(v.getTime()), `${what} is not a valid Date: ${v}`);
  assert(Math.abs(v.getTime() - Date.now()) < 10 * 60_000, `${what} ${v.toISOString()} is not close to now`);
}
// rejects runs fn, which must fail with a service error; it returns the error.
async function rejects(fn, what) {
  try {
    await fn();
  } catch (err) {
    assert(err instanceof IoTSecureTunnelingServiceException,
      `${what}: not an IoTSecureTunnelingServiceException: ${err && err.name}: ${err && err.message}`);
    return err;
  }
  throw new CheckError(`${what}: succeeded, want an error`);
}
function isNotFound(err, what) {
  assert(err instanceof ResourceNotFoundException,
    `${what}: want ResourceNotFoundException instance, got ${err.name}: ${err.message}`);
  eq(err.name, "ResourceNotFoundException", `${what}: err.name`);
  eq(err.$fault, "client", `${what}: err.$fault`);
  eq(err.$metadata.httpStatusCode, 400, `${what}: HTTP status`);
  assert(err.message, `${what}: empty message`);
}

const checks = [];
async function check(name, fn) {
  try {
    const detail = await fn();
    checks.push(detail === undefined ? { name, ok: true } : { name, ok: true, detail });
  } catch (err) {
    const msg = err instanceof CheckError ? err.message : `unexpected ${err && err.name}: ${err && err.message}`;
    checks.push({ name, ok: false, error: msg });
  }
}

// state carries tunnels between checks; a check whose tunnel is missing
// fails as "not run" instead of with a TypeError.
const state = new Proxy({}, {
  get(target, key) {
    if (typeof key === "string" && !(key in target)) throw new CheckError(`not run: no '${key}' tunnel (an earlier check failed)`);
    return target[key];
  },
});
const tunnelIdRe = /^[a-zA-Z0-9_\-+=:]{1,128}$/;

await check("OpenTunnel", async () => {
  const out = await send(new OpenTunnelCommand({
    description: "sdk-js main tunnel",
    destinationConfig: { thingName: "sdk-thing-1", services: ["SSH", "HTTP"] },
    tags: [{ key: "env", value: "test" }, { key: "team", value: "edge" }],
    timeoutConfig: { maxLifetimeTimeoutMinutes: 30 },
  }));
  state.main = out;
  eq(out.$metadata.httpStatusCode, 200, "HTTP status");
  assert(out.$metadata.requestId, "no request id (x-amzn-requestid)");
  assert(tunnelIdRe.test(out.tunnelId || ""), `tunnelId ${out.tunnelId} does not match the model pattern`);
  eq(out.tunnelArn, `arn:aws:tunnel:${region}:${account}:tunnel/${out.tunnelId}`, "tunnelArn");
  assert(out.sourceAccessToken && out.destinationAccessToken, "missing access tokens");
  assert(out.sourceAccessToken !== out.destinationAccessToken, "source and destination tokens are equal");
});

await check("DescribeTunnel", async () => {
  const { tunnel: t } = await send(new DescribeTunnelCommand({ tunnelId: state.main.tunnelId }));
  eq(t.tunnelId, state.main.tunnelId, "tunnelId");
  eq(t.tunnelArn, state.main.tunnelArn, "tunnelArn");
  eq(t.status, "OPEN", "status");
  isDate(t.createdAt, "createdAt");
  isDate(t.lastUpdatedAt, "lastUpdatedAt");
  eq(t.description, "sdk-js main tunnel", "description");
  eq(t.destinationConfig, { thingName: "sdk-thing-1", services: ["SSH", "HTTP"] }, "destinationConfig");
  eq(t.timeoutConfig, { maxLifetimeTimeoutMinutes: 30 }, "timeoutConfig");
  eq(t.tags, [{ key: "env", value: "test" }, { key: "team", value: "edge" }], "tags");
  for (const [mode, cs] of [["source", t.sourceConnectionState], ["destination", t.destinationConnectionState]]) {
    eq(cs && cs.status, "DISCONNECTED", `${mode}ConnectionState.status`);
    isDate(cs.lastUpdatedAt, `${mode}ConnectionState.lastUpdatedAt`);
  }
});

await check("ListTunnels paging with thingName and maxResults", async () => {
  const opened = [];
  for (let i = 0; i < 5; i++) {
    const out = await send(new OpenTunnelCommand({
      description: `page ${i}`, destinationConfig: { thingName: "sdk-page-thing", services: ["SSH"] },
    }));
    opened.push(out.tunnelId);
  }
  state.paged = opened;
  const seen = [];
  let nextToken;
  let pages = 0;
  do {
    const out = await send(new ListTunnelsCommand({ thingName: "sdk-page-thing", maxResults: 2, nextToken }));
    pages++;
    assert(out.tunnelSummaries.length <= 2, `page ${pages} has ${out.tunnelSummaries.length} summaries, maxResults 2`);
    for (const s of out.tunnelSummaries) {
      eq(s.status, "OPEN", `summary ${s.tunnelId} status`);
      isDate(s.createdAt, `summary ${s.tunnelId} createdAt`);
      isDate(s.lastUpdatedAt, `summary ${s.tunnelId} lastUpdatedAt`);
      eq(s.tunnelArn, `arn:aws:tunnel:${region}:${account}:tunnel/${s.tunnelId}`, "summary tunnelArn");
      seen.push(s.tunnelId);
    }
    nextToken = out.nextToken;
    assert(pages <= 10, "paging does not end");
  } while (nextToken);
  assert(pages >= 3, `5 tunnels with maxResults 2 came in ${pages} page(s)`);
  eq(seen, [...opened].reverse(), "tunnel ids over all pages (newest first, thingName filter)");

  const viaPaginator = [];
  for await (const page of paginateListTunnels({ client, pageSize: 3 }, { thingName: "sdk-page-thing" })) {
    viaPaginator.push(...page.tunnelSummaries.map((s) => s.tunnelId));
  }
  eq(viaPaginator, [...opened].reverse(), "paginateListTunnels ids");

  const all = await send(new ListTunnelsCommand({}));
  assert(all.tunnelSummaries.some((s) => s.tunnelId === state.main.tunnelId), "unfiltered list lacks the main tunnel");
});

await check("RotateTunnelAccessToken DESTINATION with destinationConfig", async () => {
  const out = await send(new RotateTunnelAccessTokenCommand({
    tunnelId: state.main.tunnelId, clientMode: "DESTINATION",
    destinationConfig: { thingName: "sdk-thing-2", services: ["SSH"] },
  }));
  eq(out.tunnelArn, state.main.tunnelArn, "tunnelArn");
  assert(out.destinationAccessToken && out.destinationAccessToken !== state.main.destinationAccessToken,
    "destinationAccessToken missing or not rotated");
  eq(out.sourceAccessToken, undefined, "sourceAccessToken (only the rotated token is returned)");
  const { tunnel: t } = await send(new DescribeTunnelCommand({ tunnelId: state.main.tunnelId }));
  eq(t.destinationConfig, { thingName: "sdk-thing-2", services: ["SSH"] }, "destinationConfig after rotation");
});

await check("RotateTunnelAccessToken SOURCE", async () => {
  const out = await send(new RotateTunnelAccessTokenCommand({ tunnelId: state.main.tunnelId, clientMode: "SOURCE" }));
  eq(out.tunnelArn, state.main.tunnelArn, "tunnelArn");
  assert(out.sourceAccessToken && out.sourceAccessToken !== state.main.sourceAccessToken,
    "sourceAccessToken missing or not rotated");
  eq(out.destinationAccessToken, undefined, "destinationAccessToken (only the rotated token is returned)");
  isNotFound(await rejects(() => send(new RotateTunnelAccessTokenCommand({ tunnelId: "no-such-tunnel", clientMode: "ALL" })),
    "rotate unknown tunnel"), "rotate unknown tunnel");
});

await check("TagResource/UntagResource/ListTagsForResource", async () => {
  const resourceArn = state.main.tunnelArn;
  const byKey = (tags) => [...tags].sort((a, b) => a.key.localeCompare(b.key));
  await send(new TagResourceCommand({ resourceArn, tags: [{ key: "owner", value: "sdk" }, { key: "env", value: "prod" }] }));
  let out = await send(new ListTagsForResourceCommand({ resourceArn }));
  eq(byKey(out.tags), [{ key: "env", value: "prod" }, { key: "owner", value: "sdk" }, { key: "team", value: "edge" }],
    "tags after TagResource");
  await send(new UntagResourceCommand({ resourceArn, tagKeys: ["team"] }));
  out = await send(new ListTagsForResourceCommand({ resourceArn }));
  eq(byKey(out.tags), [{ key: "env", value: "prod" }, { key: "owner", value: "sdk" }], "tags after UntagResource");
  const bad = `arn:aws:tunnel:${region}:${account}:tunnel/no-such-tunnel`;
  isNotFound(await rejects(() => send(new TagResourceCommand({ resourceArn: bad, tags: [{ key: "k", value: "v" }] })),
    "TagResource unknown arn"), "TagResource unknown arn");
  isNotFound(await rejects(() => send(new UntagResourceCommand({ resourceArn: bad, tagKeys: ["k"] })),
    "UntagResource unknown arn"), "UntagResource unknown arn");
  isNotFound(await rejects(() => send(new ListTagsForResourceCommand({ resourceArn: bad })),
    "ListTagsForResource unknown arn"), "ListTagsForResource unknown arn");
});

await check("CloseTunnel then DescribeTunnel shows CLOSED", async () => {
  await send(new CloseTunnelCommand({ tunnelId: state.main.tunnelId }));
  const { tunnel: t } = await send(new DescribeTunnelCommand({ tunnelId: state.main.tunnelId }));
  eq(t.status, "CLOSED", "status after CloseTunnel");
  const list = await send(new ListTunnelsCommand({ thingName: "sdk-thing-2" }));
  eq(list.tunnelSummaries.map((s) => [s.tunnelId, s.status]), [[state.main.tunnelId, "CLOSED"]], "closed tunnel in ListTunnels");
});

await check("CloseTunnel delete:true then DescribeTunnel is ResourceNotFoundException", async () => {
  const victim = state.paged[0];
  await send(new CloseTunnelCommand({ tunnelId: victim, delete: true }));
  isNotFound(await rejects(() => send(new DescribeTunnelCommand({ tunnelId: victim })), "describe deleted"), "describe deleted");
  isNotFound(await rejects(() => send(new CloseTunnelCommand({ tunnelId: victim })), "close deleted"), "close deleted");
});

// invalid lists OpenTunnel inputs the model or the service quota rejects;
// the error must be a 400 whose message names the field.
const invalid = [
  { what: "bad thingName", field: "destinationConfig.thingName", names: ["ValidationException"],
    input: { destinationConfig: { thingName: "bad thing!", services: ["SSH"] } } },
  { what: "4 services", field: "destinationConfig.services", names: ["ValidationException", "LimitExceededException"],
    input: { destinationConfig: { services: ["a", "b", "c", "d"] } } },
  { what: "lifetime 721", field: "timeoutConfig.maxLifetimeTimeoutMinutes", names: ["ValidationException"],
    input: { timeoutConfig: { maxLifetimeTimeoutMinutes: 721 } } },
  { what: "empty tag list", field: "tags", names: ["ValidationException"], input: { tags: [] } },
];
for (const c of invalid) {
  await check(`OpenTunnel invalid input: ${c.what}`, async () => {
    const err = await rejects(() => send(new OpenTunnelCommand(c.input)), c.what);
    assert(c.names.includes(err.name), `err.name ${err.name}, want one of ${c.names} (message: ${err.message})`);
    eq(err.$metadata.httpStatusCode, 400, "HTTP status");
    eq(err.$fault, "client", "err.$fault");
    assert(err.message.includes(c.field), `message does not name ${c.field}: ${err.message}`);
    return `${err.name}: ${err.message}`;
  });
}

await check(`LimitExceededException at ${maxOpen} open tunnels`, async () => {
  let open = 0;
  for await (const page of paginateListTunnels({ client, pageSize: 100 }, {})) {
    open += page.tunnelSummaries.filter((s) => s.status === "OPEN").length;
  }
  assert(open <= maxOpen, `${open} tunnels already open, limit ${maxOpen}`);
  let last;
  for (; open < maxOpen; open++) {
    last = await send(new OpenTunnelCommand({ description: `fill ${open}` })).catch((err) => {
      throw new CheckError(`OpenTunnel with ${open} open tunnels (limit ${maxOpen}) failed: ${err.name}: ${err.message}`);
    });
  }
  const err = await rejects(() => send(new OpenTunnelCommand({ description: "one too many" })), "open past the limit");
  assert(err instanceof LimitExceededException, `want LimitExceededException instance, got ${err.name}: ${err.message}`);
  eq(err.name, "LimitExceededException", "err.name");
  eq(err.$metadata.httpStatusCode, 400, "HTTP status");
  assert(err.message, "empty message");
  // Closed tunnels do not count: after one close, one open succeeds again.
  await send(new CloseTunnelCommand({ tunnelId: last ? last.tunnelId : state.paged[1] }));
  await send(new OpenTunnelCommand({ description: "after close" }));
});

// The emulator verifies SigV4 signatures: a wrong secret, an unknown key and
// a signature for another region are refused with AWS's 403 errors.
const refusals = [
  { what: "wrong secret", name: "InvalidSignatureException", cfg: { credentials: { accessKeyId, secretAccessKey: "wrong" } } },
  { what: "unknown access key", name: "UnrecognizedClientException",
    cfg: { credentials: { accessKeyId: "AKIDUNKNOWN", secretAccessKey } } },
  { what: "other region", name: "InvalidSignatureException", cfg: { region: "eu-west-1" } },
];
for (const r of refusals) {
  await check(`SigV4 refused: ${r.what}`, async () => {
    const bad = new IoTSecureTunnelingClient({ endpoint, region, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1, ...r.cfg });
    try {
      const err = await rejects(() => bad.send(new ListTunnelsCommand({})), r.what);
      eq(err.name, r.name, "err.name");
      eq(err.$metadata.httpStatusCode, 403, "HTTP status");
      return `${err.name}: ${err.message.split("\n")[0]}`;
    } finally {
      bad.destroy();
    }
  });
}

const failed = checks.filter((c) => !c.ok);
console.log(JSON.stringify({ ok: failed.length === 0, sdkVersion, checks }));
for (const c of failed) console.error(`FAILED: ${c.name}: ${c.error}`);
client.destroy();
process.exitCode = failed.length === 0 ? 0 : 1;
