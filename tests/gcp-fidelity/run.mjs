// @google-cloud/run in REST fallback mode against agentbox-gcp-emulator: the client sends
// $alt=json;enum-encoding=int and enums as integers. Create a job with a GCS volume, run it with
// overrides, read the execution and its tasks (exit codes), cancel, delete. Credentials come
// from the emulator's token endpoint through google-auth-library's refresh_token grant.
import {ExecutionsClient, JobsClient, TasksClient} from '@google-cloud/run';
import {OAuth2Client} from 'google-auth-library';
import assert from 'node:assert/strict';
import {createRequire} from 'node:module';
import protobuf from 'protobufjs';

const port = Number(process.env.EMULATOR_PORT);
assert.ok(port, 'EMULATOR_PORT must be set');
const endpoint = `http://127.0.0.1:${port}`;

const auth = new OAuth2Client({clientId: 'fidelity', clientSecret: 'secret',
                               endpoints: {oauth2TokenUrl: `${endpoint}/token`}});
auth.setCredentials({refresh_token: 'fidelity-refresh-token'});
const opts = {fallback: true, apiEndpoint: '127.0.0.1', port, protocol: 'http', authClient: auth};
const jobs = new JobsClient(opts);
const executions = new ExecutionsClient(opts);
const tasks = new TasksClient(opts);

// The client hands enums back as numbers in this mode (the emulator answers with names; the
// client's decoder maps both): compare by the proto's value.
const State = {CONDITION_SUCCEEDED: 4, CONDITION_FAILED: 3};
const enumIs = (v, name, num) => v === name || v === num;

// The emulator's raw JSON must use only fields the google.cloud.run.v2 protos define (the
// client's decoder would silently drop a misspelt one): checked against the protos.json the
// client package ships.
const require = createRequire(import.meta.url);
const root = protobuf.Root.fromJSON(require('@google-cloud/run/build/protos/protos.json'));
function unknownFields(typeName, value, path = typeName) {
  const type = root.lookupType(typeName);
  const out = [];
  for (const [key, v] of Object.entries(value)) {
    if (key === '@type') {
      continue;
    }
    const field = type.fields[key];
    if (!field) {
      out.push(`${path}.${key}`);
      continue;
    }
    field.resolve();
    const sub = field.resolvedType;
    if (!(sub instanceof protobuf.Type) || field.map || typeof v !== 'object' || v === null ||
        sub.fullName.startsWith('.google.protobuf.')) {
      continue;
    }
    const items = Array.isArray(v) ? v : [v];
    items.forEach((item, i) => out.push(...unknownFields(sub.fullName.slice(1), item,
                                                         `${path}.${key}${Array.isArray(v) ? `[${i}]` : ''}`)));
  }
  return out;
}
async function raw(path) {
  const r = await fetch(`${endpoint}/v2/${path}`, {headers: {Authorization: `Bearer ${token}`}});
  assert.equal(r.status, 200, path);
  return r.json();
}

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

async function waitDone(name, ms = 60000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const [e] = await executions.getExecution({name});
    if (e.completionTime) {
      return e;
    }
    assert.ok(Date.now() < deadline, `execution ${name} did not finish in ${ms} ms`);
    await new Promise(r => setTimeout(r, 100));
  }
}

// The bucket the job mounts, through the Storage JSON API with the token we were given.
const {token} = await auth.getAccessToken();
assert.match(token, /^ya29\.emulator-/);
const mk = await fetch(`${endpoint}/storage/v1/b?project=fidelity`, {
  method: 'POST', headers: {Authorization: `Bearer ${token}`, 'Content-Type': 'application/json'},
  body: JSON.stringify({name: 'fid-node-run'})});
assert.equal(mk.status, 200);

const parent = 'projects/fidelity/locations/us-central1';
const jobName = `${parent}/jobs/fid-job`;
const script = 'echo "$GREETING task=$CLOUD_RUN_TASK_INDEX of $CLOUD_RUN_TASK_COUNT ' +
               'job=$CLOUD_RUN_JOB args=$*" > "/ws/out-$CLOUD_RUN_EXECUTION.txt"; exit "$CODE"';

await step('create job (enums as integers)', async () => {
  const [op] = await jobs.createJob({parent, jobId: 'fid-job', job: {
    launchStage: 'GA',
    template: {taskCount: 1, template: {
      maxRetries: 0, timeout: {seconds: 120},
      executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
      containers: [{name: 'main', image: 'agentbox/base:latest',
                    command: ['/bin/sh', '-c', script, 'sh'], args: ['default'],
                    env: [{name: 'GREETING', value: 'hi'}, {name: 'CODE', value: '0'}],
                    resources: {limits: {cpu: '1', memory: '512Mi'}},
                    volumeMounts: [{name: 'ws', mountPath: '/ws'}]}],
      volumes: [{name: 'ws', gcs: {bucket: 'fid-node-run', readOnly: false}}]}}}});
  const [job] = await op.promise();
  assert.equal(job.name, jobName);
  const [got] = await jobs.getJob({name: jobName});
  assert.equal(got.template.template.containers[0].image, 'agentbox/base:latest');
  assert.ok(enumIs(got.launchStage, 'GA', 4), String(got.launchStage));
  await assert.rejects(jobs.createJob({parent, jobId: 'fid-job', job: got}),
                       e => e.code === 6 || e.code === 409);  // ALREADY_EXISTS, as gRPC or HTTP code
});

let execName;
await step('run with overrides; execution and tasks', async () => {
  const [op] = await jobs.runJob({name: jobName, overrides: {
    containerOverrides: [{name: 'main', args: ['over', 'ridden'],
                          env: [{name: 'GREETING', value: 'hello'}]}],
    taskCount: 1, timeout: {seconds: 60}}});
  execName = op.metadata.name;
  assert.ok(execName.startsWith(`${jobName}/executions/fid-job-`), execName);
  const [exec] = await op.promise();
  assert.equal(exec.name, execName);
  assert.equal(exec.succeededCount, 1);
  const done = exec.conditions.find(c => c.type === 'Completed');
  assert.ok(enumIs(done.state, 'CONDITION_SUCCEEDED', State.CONDITION_SUCCEEDED));
  const [list] = await tasks.listTasks({parent: execName});
  assert.equal(list.length, 1);
  assert.equal(list[0].lastAttemptResult.exitCode, 0);
  assert.equal(list[0].index, 0);
  const [execs] = await executions.listExecutions({parent: jobName});
  assert.ok(execs.some(e => e.name === execName));
  // What the container wrote into its read-write volume is an object now.
  const short = execName.split('/').pop();
  const res = await fetch(`${endpoint}/storage/v1/b/fid-node-run/o/out-${short}.txt?alt=media`,
                          {headers: {Authorization: `Bearer ${token}`}});
  assert.equal(res.status, 200);
  assert.equal((await res.text()).trim(),
               'hello task=0 of 1 job=fid-job args=over ridden');
});

await step('a failing execution reports its exit code', async () => {
  const [op] = await jobs.runJob({name: jobName, overrides: {
    containerOverrides: [{name: 'main', env: [{name: 'CODE', value: '7'}]}]}});
  const e = await waitDone(op.metadata.name);
  assert.equal(e.failedCount, 1);
  const done = e.conditions.find(c => c.type === 'Completed');
  assert.ok(enumIs(done.state, 'CONDITION_FAILED', State.CONDITION_FAILED));
  const [list] = await tasks.listTasks({parent: e.name});
  assert.equal(list[0].lastAttemptResult.exitCode, 7);
});

await step('cancel a running execution', async () => {
  const [op] = await jobs.runJob({name: jobName, overrides: {
    containerOverrides: [{name: 'main', args: ['x'], env: [{name: 'CODE', value: '0'}]}]}});
  // A long sleep via GREETING would be unusual; instead cancel right away (before or while it
  // runs, both are cancellations).
  await executions.cancelExecution({name: op.metadata.name});
  const e = await waitDone(op.metadata.name);
  assert.ok(e.cancelledCount + e.succeededCount === 1, JSON.stringify(e));
  if (e.cancelledCount === 1) {
    assert.ok(enumIs(e.conditions.find(c => c.type === 'Completed').state, 'CONDITION_FAILED',
                     State.CONDITION_FAILED));
  }
});

await step('responses use only fields of the v2 protos', async () => {
  const bad = [
    ...unknownFields('google.cloud.run.v2.Job', await raw(jobName)),
    ...unknownFields('google.cloud.run.v2.Execution', await raw(execName)),
    ...(await raw(`${execName}/tasks`)).tasks.flatMap(
        t => unknownFields('google.cloud.run.v2.Task', t)),
  ];
  const [ops] = await Promise.all([raw(`${parent}/operations`)]);
  for (const op of ops.operations) {
    bad.push(...unknownFields('google.longrunning.Operation',
                              {name: op.name, done: op.done}));
    bad.push(...unknownFields('google.cloud.run.v2.Execution', op.metadata, 'Operation.metadata'));
  }
  assert.deepEqual(bad, [], `fields the protos do not define: ${bad.join(', ')}`);
});

await step('delete execution and job', async () => {
  const [op] = await executions.deleteExecution({name: execName});
  await op.promise();
  const notFound = e => e.code === 5 || e.code === 404;  // NOT_FOUND, as gRPC or HTTP code
  await assert.rejects(executions.getExecution({name: execName}), notFound);
  const [jop] = await jobs.deleteJob({name: jobName});
  await jop.promise();
  await assert.rejects(jobs.getJob({name: jobName}), notFound);
});

console.log('run fidelity: all steps passed');
