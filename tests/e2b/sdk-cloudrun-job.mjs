// E2B's unmodified npm SDK against agentboxd whose cloudrun backend runs in job mode (one Cloud
// Run execution per command) without AGENTBOX_PUBLIC_URL, so session mode is not available
// (tests/e2b/run-e2b-sdk.sh cloudrun-job). Job mode has no guest that outlives a command, which
// envd needs; docs/e2b.md says what that means and this checks it:
//   - Sandbox.create asks for session mode (other backends ignore it): here that is a 400 saying
//     AGENTBOX_PUBLIC_URL is needed, raised by the SDK as a SandboxError;
//   - a sandbox created in job mode through the native API is served by the control plane
//     (connect, getInfo, list, setTimeout, isRunning, kill), and every envd call on it answers
//     501 `unimplemented` with the reason, which the SDK raises as a SandboxError.
import assert from 'node:assert/strict'
import { AuthenticationError, NotFoundError, Sandbox, SandboxError } from 'e2b'

import { rejects, results, step } from './steps.mjs'

// The native API over TCP with the same key as the SDK (so the sandbox is the key's).
async function native(method, path, body) {
  const res = await fetch(`${process.env.E2B_API_URL}${path}`, {
    method, body: body ? JSON.stringify(body) : undefined,
    headers: { authorization: `Bearer ${process.env.E2B_API_KEY}`, 'content-type': 'application/json' },
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

// What every envd call on a job-mode sandbox answers (EnvdUnsupported in translate.cc).
const jobMode = /cloudrun job mode, which cannot serve envd/
async function unserved(promise, name) {
  const e = await rejects(promise, SandboxError, name)
  assert.ok(!(e instanceof NotFoundError) && !(e instanceof AuthenticationError), `${name}: ${e.constructor.name}`)
  assert.match(e.message, jobMode, name)
  return e
}

const runId = Math.random().toString(16).slice(2, 10)

await step('Sandbox.create asks for session mode: 400 without AGENTBOX_PUBLIC_URL', async () => {
  const e = await rejects(Sandbox.create({ metadata: { run: runId } }), SandboxError, 'create')
  assert.equal(e.statusCode, 400, e.message)
  assert.match(e.message, /cloudrun session mode needs AGENTBOX_PUBLIC_URL/)
  assert.deepEqual(await Sandbox.list({ query: { metadata: { run: runId } } }).nextItems(), [])
})

let id
let sbx
await step('a job-mode sandbox made natively: connect, getInfo, list, setTimeout, isRunning', async () => {
  const made = await native('POST', '/v1/sandboxes', { labels: { run: runId } })
  assert.equal(made.status, 201, JSON.stringify(made.body))
  id = made.body.data.id
  sbx = await Sandbox.connect(id)
  assert.equal(sbx.sandboxId, id)
  const info = await sbx.getInfo()
  assert.equal(info.sandboxId, id)
  assert.deepEqual(info.metadata, { run: runId })
  assert.equal(info.state, 'running')
  const listed = await Sandbox.list({ query: { metadata: { run: runId } } }).nextItems()
  assert.deepEqual(listed.map((s) => s.sandboxId), [id])
  await sbx.setTimeout(120_000)
  const left = (await Sandbox.getInfo(id)).endAt.getTime() - Date.now()
  assert.ok(left > 100_000 && left <= 121_000, `endAt is ${left} ms away`)
  assert.equal(await sbx.isRunning(), true)
})

await step('envd on job mode: every call is a SandboxError saying why', async () => {
  await unserved(sbx.commands.run('echo hi'), 'commands.run')
  await unserved(sbx.commands.run('sleep 1', { background: true }), 'background commands.run')
  await unserved(sbx.commands.list(), 'commands.list')
  await unserved(sbx.commands.kill(1), 'commands.kill')
  await unserved(sbx.commands.sendStdin(1, 'x'), 'sendStdin')
  await unserved(sbx.pty.create({ cols: 80, rows: 24, onData: () => {} }), 'pty.create')
  await unserved(sbx.files.read('/workspace/x.txt'), 'files.read')
  await unserved(sbx.files.write('/workspace/x.txt', 'x'), 'files.write')
  await unserved(sbx.files.list('/workspace'), 'files.list')
  await unserved(sbx.files.exists('/workspace'), 'files.exists')
  await unserved(sbx.files.makeDir('/workspace/d'), 'files.makeDir')
  await unserved(sbx.files.watchDir('/workspace', () => {}), 'files.watchDir')
  // Auth comes first: a wrong access token is still 401.
  const res = await fetch(`${process.env.E2B_SANDBOX_URL}/process.Process/List`, {
    method: 'POST', body: '{}',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1',
      'e2b-sandbox-id': id, 'x-access-token': 'wrong' },
  })
  assert.equal(res.status, 401)
  // Unary calls carry Connect's code and the reason.
  const raw = await fetch(`${process.env.E2B_SANDBOX_URL}/process.Process/List`, {
    method: 'POST', body: '{}',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1',
      'e2b-sandbox-id': id, 'x-access-token': sbx.envdAccessToken },
  })
  assert.equal(raw.status, 501)
  const body = await raw.json()
  assert.equal(body.code, 'unimplemented')
  assert.match(body.message, jobMode)
})

await step('getMetrics: cloudrun\'s documented 501', async () => {
  const e = await rejects(sbx.getMetrics(), SandboxError, 'getMetrics')
  assert.equal(e.statusCode, 501, e.message)
  assert.match(e.message, /cloudrun backend does not report metrics/)
})

await step('the sandbox works through the native API (one execution per command), then kill', async () => {
  const ran = await native('POST', `/v1/sandboxes/${id}/api/v1/shell/run`,
    { command: 'echo from-job > /workspace/f.txt && cat /workspace/f.txt' })
  assert.equal(ran.status, 200, JSON.stringify(ran.body))
  assert.equal(ran.body.data.stdout, 'from-job\n')
  assert.equal(await sbx.kill(), true)
  assert.equal(await Sandbox.kill(id), false)
  await rejects(Sandbox.getInfo(id), NotFoundError, 'getInfo after kill')
  assert.equal(await sbx.isRunning(), false)
})

console.log(`e2b sdk: ${results.length} steps passed on ${process.env.AGENTBOX_BACKEND}`)
