// commands.run('echo hi') through agentboxd's E2B-compatible API, beside the same command
// through the native API. Run by tests/e2b/run-e2b-sdk.sh, which starts agentboxd:
//   tests/e2b/run-e2b-sdk.sh build/release/src/daemon/agentboxd jail $PWD/bench/e2b_bench.mjs [N]
// Prints p50/p90/p99 in ms of, on one sandbox, each over one keep-alive connection:
//   sdk      E2B's npm SDK: sandbox.commands.run('echo hi') (bash -l -c, as user `user`)
//   connect  the same Process/Start request without the SDK (fetch, Connect envelopes)
//   native   the guest's exec/start relayed by the native API (/v1/sandboxes/{id}/api/v1/...):
//            the same program, user and guest path, without the E2B translation
//   shell    the native stateful tool call: shell/run 'echo hi' in a session
//   connect-echo / native-echo  connect and native with /bin/echo hi (no login shell): the
//            difference is the E2B layer's own cost
import assert from 'node:assert/strict'

const { Sandbox } = await import(
  new URL('../tests/e2b/node_modules/e2b/dist/index.mjs', import.meta.url))
const N = Number(process.argv[2] ?? 300)
const WARMUP = 30
const api = process.env.E2B_API_URL
const auth = { authorization: `Bearer ${process.env.E2B_API_KEY}`, 'content-type': 'application/json' }

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
async function measure(name, fn) {
  for (let i = 0; i < WARMUP; i++) await fn()
  const t = []
  for (let i = 0; i < N; i++) {
    const t0 = performance.now()
    await fn()
    t.push(performance.now() - t0)
  }
  console.log(`${name.padEnd(12)} n=${N} min=${Math.min(...t).toFixed(2)} ms p50=${pct(t, 50).toFixed(2)} ms p90=${pct(t, 90).toFixed(2)} ms ` +
    `p99=${pct(t, 99).toFixed(2)} ms`)
  return pct(t, 50)
}

const sbx = await Sandbox.create()
try {
  const info = await sbx.getInfo()
  const start = { process: { cmd: '/bin/bash', args: ['-l', '-c', 'echo hi'], envs: {} }, stdin: false }
  const frame = (msg) => {
    const json = Buffer.from(JSON.stringify(msg))
    const env = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), json])
    env.writeUInt32BE(json.length, 1)
    return env
  }
  const envelope = frame(start)
  const echoEnvelope = frame({ process: { cmd: '/bin/echo', args: ['hi'], envs: {} }, stdin: false })
  const startVia = async (body) => {
    const res = await fetch(`${process.env.E2B_SANDBOX_URL}/process.Process/Start`, {
      method: 'POST', body,
      headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1',
        'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': sbx.envdAccessToken },
    })
    const out = Buffer.from(await res.arrayBuffer())
    assert.ok(out.includes(Buffer.from('"exitCode":0')), out.toString())
  }
  const nativeVia = async (cmd, args) => {
    const res = await fetch(`${api}/v1/sandboxes/${sbx.sandboxId}/api/v1/exec/start`, {
      method: 'POST', headers: auth,
      body: JSON.stringify({ cmd, args, user: 'user', user_fallback: true }),
    })
    const body = await res.text()
    assert.ok(body.includes('"exit_code":0'), body)
  }

  const sdk = await measure('sdk', async () => {
    const r = await sbx.commands.run('echo hi')
    assert.equal(r.stdout, 'hi\n')
  })
  const connect = await measure('connect', () => startVia(envelope))
  const native = await measure('native', () => nativeVia('/bin/bash', ['-l', '-c', 'echo hi']))
  const connectEcho = await measure('connect-echo', () => startVia(echoEnvelope))
  const nativeEcho = await measure('native-echo', () => nativeVia('/bin/echo', ['hi']))
  const shell = await measure('shell', async () => {
    const res = await fetch(`${api}/v1/sandboxes/${sbx.sandboxId}/api/v1/shell/run`, {
      method: 'POST', headers: auth, body: JSON.stringify({ command: 'echo hi' }),
    })
    const body = await res.json()
    assert.equal(body.data.stdout, 'hi\n')
  })
  console.log(`backend=${process.env.AGENTBOX_BACKEND} template=${info.templateId} ` +
    `e2b-layer(connect-echo - native-echo)=${(connectEcho - nativeEcho).toFixed(2)} ms ` +
    `(bash -l: ${(connect - native).toFixed(2)} ms) ` +
    `sdk-overhead(sdk-connect)=${(sdk - connect).toFixed(2)} ms shell=${shell.toFixed(2)} ms`)
} finally {
  await sbx.kill()
}
