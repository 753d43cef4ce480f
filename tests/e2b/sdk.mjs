// E2B's unmodified npm SDK against agentboxd (tests/e2b/run-e2b-sdk.sh starts it and sets
// E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY). Every call docs/e2b.md lists as supported, the
// errors the SDK must raise for bad input, a second SDK client reconnecting, and the same
// sandbox through the native API and the `agentbox` CLI (AGENTBOX_CLI).
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import http from 'node:http'
import {
  AuthenticationError,
  CommandExitError,
  InvalidArgumentError,
  NotFoundError,
  Sandbox,
  SandboxError,
  TimeoutError,
} from 'e2b'

import { rejects, results, step } from './steps.mjs'

// The native API on agentboxd's unix socket (the local, all-seeing caller).
function native(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: process.env.AGENTBOX_SOCKET, path, method,
        headers: { 'content-type': 'application/json' } },
      (res) => {
        let data = ''
        res.on('data', (c) => (data += c))
        res.on('end', () => resolve({ status: res.statusCode, body: data ? JSON.parse(data) : null }))
      })
    req.on('error', reject)
    req.end(body ? JSON.stringify(body) : undefined)
  })
}

function cli(...args) {
  return execFileSync(process.env.AGENTBOX_CLI, [
    '--url', process.env.E2B_API_URL, '--api-key', process.env.E2B_API_KEY, ...args,
  ], { encoding: 'utf8' })
}

const runId = Math.random().toString(16).slice(2, 10)
let sbx
// Whether the sandbox has the `user` account (docs/e2b.md): everywhere but an unprivileged jail.
let hasUser = true
let me = 'user'

await step('create with metadata, envs and timeout', async () => {
  sbx = await Sandbox.create({ metadata: { suite: 'e2b-sdk', run: runId }, envs: { FROM_CREATE: 'yes' },
    timeoutMs: 600_000 })
  assert.match(sbx.sandboxId, /^sb-/)
})

await step('the `user` account: its own uid, home /home/user, root on request', async () => {
  const r = await sbx.commands.run('grep "^user:" /etc/passwd | cut -d: -f3,6; id -u; touch ~/mine && stat -c %U ~/mine',
    { user: 'user' }).catch((e) => e.result ?? e)
  hasUser = r.exitCode === 0
  me = hasUser ? 'user' : 'root'
  // Every backend has it (the jail over the host's read-only /etc through its generated
  // /etc/passwd); only an unprivileged jail (no id range: agentboxd not run as root) cannot.
  if (process.env.AGENTBOX_BACKEND === 'docker' || process.getuid() === 0) {
    assert.equal(hasUser, true, `no user account: ${JSON.stringify(r)}`)
  }
  if (hasUser) {
    const [entry, uid, owner] = r.stdout.trim().split('\n')
    assert.match(entry, /^[1-9][0-9]*:\/home\/user$/)
    assert.equal(uid, entry.split(':')[0])
    assert.equal(owner, 'user')
    const root = await sbx.commands.run('id -u; touch /home/user/by-root && echo ok', { user: 'root' })
    assert.equal(root.stdout, '0\nok\n')
    // `user` is not root: the system's files are not its to change.
    const denied = await rejects(sbx.commands.run('touch /etc/agentbox-probe'), CommandExitError,
      'user writing /etc')
    assert.ok(denied.exitCode !== 0)
  } else {
    console.log('note: no id range (unprivileged jail): commands run as root with HOME=/home/user')
  }
})

await step('commands.run: stdout, stderr, exit code', async () => {
  const r = await sbx.commands.run('echo hi; echo oops >&2')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'hi\n')
  assert.equal(r.stderr, 'oops\n')
})

await step('default user, home and cwd; sandbox and per-command envs; cwd option', async () => {
  const r = await sbx.commands.run('whoami; echo $HOME; pwd; echo $FROM_CREATE $PER_CMD',
    { envs: { PER_CMD: 'also' } })
  assert.equal(r.stdout, `${me}\n/home/user\n/home/user\nyes also\n`)
  const root = await sbx.commands.run('whoami; pwd', { user: 'root', cwd: '/tmp' })
  assert.equal(root.stdout, 'root\n/tmp\n')
})

await step('streamed output reaches onStdout/onStderr as it is written', async () => {
  const out = []
  const err = []
  const r = await sbx.commands.run('for i in 1 2 3; do echo $i; sleep 0.05; done; echo e >&2',
    { onStdout: (d) => out.push(d), onStderr: (d) => err.push(d) })
  assert.equal(out.join(''), '1\n2\n3\n')
  assert.ok(out.length >= 2, `expected several stdout chunks, got ${out.length}`)
  assert.equal(err.join(''), 'e\n')
  assert.equal(r.stdout, '1\n2\n3\n')
})

await step('a failing command raises CommandExitError', async () => {
  const e = await rejects(sbx.commands.run('echo bad >&2; exit 3'), CommandExitError, 'exit 3')
  assert.equal(e.exitCode, 3)
  assert.equal(e.stderr, 'bad\n')
})

await step('a command over its timeout raises TimeoutError', async () => {
  await rejects(sbx.commands.run('sleep 5', { timeoutMs: 700 }), TimeoutError, 'timeout')
})

await step('background command: list, wait', async () => {
  const h = await sbx.commands.run('sleep 0.3; echo done', { background: true })
  assert.ok(h.pid > 0)
  const list = await sbx.commands.list()
  assert.ok(list.some((p) => p.pid === h.pid && p.cmd === '/bin/bash'), JSON.stringify(list))
  const r = await h.wait()
  assert.equal(r.stdout, 'done\n')
  assert.equal(r.exitCode, 0)
})

await step('stdin: sendStdin and closeStdin', async () => {
  const h = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(h.pid, 'abc')
  await sbx.commands.closeStdin(h.pid)
  const r = await h.wait()
  assert.equal(r.stdout, 'abc')
})

await step('pty: create, sendInput, resize, output on onData, kill', async () => {
  let seen = ''
  const dec = new TextDecoder()
  const onData = (d) => { seen += dec.decode(d, { stream: true }) }
  const until = async (re, what) => {
    const end = Date.now() + 10_000
    while (!re.test(seen)) {
      assert.ok(Date.now() < end, `${what}: not seen in ${JSON.stringify(seen.slice(-400))}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const term = await sbx.pty.create({ cols: 100, rows: 30, onData, envs: { FROM_PTY: 'p1' } })
  assert.ok(term.pid > 0)
  const enc = new TextEncoder()
  await sbx.pty.sendInput(term.pid, enc.encode('tty; stty size; echo "u=$(whoami) t=$TERM e=$FROM_PTY d=$PWD"\n'))
  await until(/\/dev\/pts\/\d+/, 'tty')
  await until(/30 100/, 'stty size')
  await until(new RegExp(`u=${me} t=xterm-256color e=p1 d=/home/user`), 'whoami, TERM, envs, cwd')
  await sbx.pty.resize(term.pid, { cols: 120, rows: 40 })
  await sbx.pty.sendInput(term.pid, enc.encode('stty size\n'))
  await until(/40 120/, 'stty size after resize')
  // A second client attaches to the same terminal and sees what it prints from then on.
  const other = await Sandbox.connect(sbx.sandboxId)
  let seen2 = ''
  const h2 = await other.pty.connect(term.pid, { onData: (d) => { seen2 += dec.decode(d) } })
  await sbx.pty.sendInput(term.pid, enc.encode('echo second-$((40+2))\n'))
  await until(/second-42/, 'first client')
  const end = Date.now() + 10_000
  while (!/second-42/.test(seen2)) {
    assert.ok(Date.now() < end, `second client saw ${JSON.stringify(seen2)}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.equal(await sbx.pty.kill(term.pid), true)
  const e = await rejects(term.wait(), CommandExitError, 'killed pty')
  assert.equal(e.exitCode, -1)
  await rejects(h2.wait(), CommandExitError, 'killed pty (second client)')
  assert.equal(await sbx.pty.kill(term.pid), false)
  // Bad input: a pid that is not running, a size out of range, input to a process without one.
  await rejects(sbx.pty.sendInput(term.pid, enc.encode('x')), NotFoundError, 'input to an ended pty')
  await rejects(sbx.pty.resize(term.pid, { cols: 10, rows: 10 }), NotFoundError, 'resize an ended pty')
  await rejects(sbx.pty.create({ cols: 0, rows: 10 }), InvalidArgumentError, 'zero columns')
  const plain = await sbx.commands.run('sleep 30', { background: true })
  await rejects(sbx.pty.resize(plain.pid, { cols: 10, rows: 10 }), SandboxError, 'resize without a pty')
  await plain.kill()
})

await step('files.watchDir: create, write, rename, remove; recursive; stop', async () => {
  await sbx.files.makeDir('watched/sub')
  const events = []
  const w = await sbx.files.watchDir('watched', (e) => events.push(`${e.type} ${e.name}`))
  const expect = async (want) => {
    const end = Date.now() + 10_000
    while (!want.every((x) => events.includes(x))) {
      assert.ok(Date.now() < end, `want ${JSON.stringify(want)}, saw ${JSON.stringify(events)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  await sbx.files.write('watched/a.txt', 'one')
  await sbx.commands.run('echo more >> watched/a.txt; mv watched/a.txt watched/b.txt; chmod 600 watched/b.txt; rm watched/b.txt')
  await expect(['create a.txt', 'write a.txt', 'rename a.txt', 'create b.txt', 'chmod b.txt', 'remove b.txt'])
  await sbx.files.write('watched/sub/deep.txt', 'x')
  await new Promise((r) => setTimeout(r, 200))
  assert.ok(!events.some((e) => e.includes('deep.txt')), `not recursive: ${JSON.stringify(events)}`)
  await w.stop()

  const rec = []
  const wr = await sbx.files.watchDir('watched', (e) => rec.push(`${e.type} ${e.name}`), { recursive: true })
  await sbx.commands.run('mkdir -p watched/sub/new && echo x > watched/sub/new/n.txt && echo y > watched/sub/deep.txt')
  const end = Date.now() + 10_000
  for (const want of ['create sub/new', 'create sub/new/n.txt', 'write sub/deep.txt']) {
    while (!rec.includes(want)) {
      assert.ok(Date.now() < end, `recursive: want ${want}, saw ${JSON.stringify(rec)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  await wr.stop()
  const before = rec.length
  await sbx.files.write('watched/after-stop.txt', 'z')
  await new Promise((r) => setTimeout(r, 200))
  assert.equal(rec.length, before, `events after stop: ${JSON.stringify(rec.slice(before))}`)
  // The polling watchers of envd (the Python SDK's sync watch_dir), over plain Connect calls.
  const rpc = async (method, body) => {
    const res = await fetch(`${process.env.E2B_SANDBOX_URL}/filesystem.Filesystem/${method}`, {
      method: 'POST', body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', 'connect-protocol-version': '1',
        'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': sbx.envdAccessToken },
    })
    return { status: res.status, body: await res.json() }
  }
  const made = await rpc('CreateWatcher', { path: '/home/user/watched', recursive: true })
  assert.equal(made.status, 200, JSON.stringify(made.body))
  await sbx.files.write('watched/sub/polled.txt', 'p')
  const polled = []
  const until = Date.now() + 10_000
  while (!polled.some((e) => e.name === 'sub/polled.txt' && e.type === 'EVENT_TYPE_CREATE')) {
    assert.ok(Date.now() < until, `polled: ${JSON.stringify(polled)}`)
    const got = await rpc('GetWatcherEvents', { watcherId: made.body.watcherId })
    assert.equal(got.status, 200, JSON.stringify(got.body))
    polled.push(...got.body.events)
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.equal((await rpc('RemoveWatcher', { watcherId: made.body.watcherId })).status, 200)
  assert.equal((await rpc('GetWatcherEvents', { watcherId: made.body.watcherId })).body.code, 'not_found')
  assert.equal((await rpc('CreateWatcher', { path: '/no/such/dir' })).body.code, 'not_found')
  await rejects(sbx.files.watchDir('no/such/dir', () => {}), NotFoundError, 'watch a missing directory')
  await rejects(sbx.files.watchDir('watched/sub/deep.txt', () => {}), InvalidArgumentError, 'watch a file')
  await sbx.files.remove('watched')
})

await step('second SDK client: connect to the sandbox, reattach to a process, kill it', async () => {
  const h = await sbx.commands.run('echo started; sleep 60', { background: true })
  const other = await Sandbox.connect(sbx.sandboxId)
  assert.equal(other.sandboxId, sbx.sandboxId)
  const seen = []
  const h2 = await other.commands.connect(h.pid, { onStdout: (d) => seen.push(d) })
  assert.equal(h2.pid, h.pid)
  assert.equal(await other.commands.kill(h.pid), true)
  const e = await rejects(h2.wait(), CommandExitError, 'killed process')
  assert.equal(e.exitCode, -1)
  await rejects(h.wait(), CommandExitError, 'killed process (first client)')
  assert.equal(await other.commands.kill(h.pid), false)  // gone now
  await rejects(other.commands.connect(h.pid), NotFoundError, 'connect to an ended pid')
})

await step('files: write, read, exists, getInfo, list, makeDir, rename, remove', async () => {
  const w = await sbx.files.write('notes/hello.txt', 'content\n')
  assert.equal(w.path, '/home/user/notes/hello.txt')
  assert.equal(await sbx.files.read('notes/hello.txt'), 'content\n')
  const bytes = await sbx.files.read('/home/user/notes/hello.txt', { format: 'bytes' })
  assert.equal(Buffer.from(bytes).toString(), 'content\n')
  assert.equal(await sbx.files.exists('notes/hello.txt'), true)
  assert.equal(await sbx.files.exists('notes/missing.txt'), false)
  const info = await sbx.files.getInfo('notes/hello.txt')
  assert.equal(info.type, 'file')
  assert.equal(info.size, 8)
  assert.equal(info.owner, me)
  assert.ok(info.modifiedTime instanceof Date && info.modifiedTime.getTime() > 0)
  const owner = await sbx.commands.run('stat -c %U notes/hello.txt; echo more >> notes/hello.txt')
  assert.equal(owner.stdout, `${me}\n`)
  assert.equal(await sbx.files.makeDir('notes/sub/deeper'), true)
  assert.equal(await sbx.files.makeDir('notes/sub/deeper'), false)
  const entries = await sbx.files.list('notes')
  assert.deepEqual(entries.map((e) => [e.name, e.type]).sort(), [['hello.txt', 'file'], ['sub', 'dir']])
  const deep = await sbx.files.list('notes', { depth: 2 })
  assert.ok(deep.some((e) => e.path === '/home/user/notes/sub/deeper'))
  const moved = await sbx.files.rename('notes/hello.txt', 'notes/sub/moved.txt')
  assert.equal(moved.path, '/home/user/notes/sub/moved.txt')
  assert.equal(await sbx.files.read('notes/sub/moved.txt'), 'content\nmore\n')
  await sbx.files.remove('notes')
  assert.equal(await sbx.files.exists('notes'), false)
})

await step('files.write with several files in one request; directories are the user\'s', async () => {
  const many = await sbx.files.write([
    { path: 'multi/a.txt', data: 'A' },
    { path: '/home/user/multi/b/c.txt', data: new Blob(['BC']) },
    { path: 'multi/bin.dat', data: new Uint8Array([0, 1, 2, 255]).buffer },
  ])
  assert.deepEqual(many.map((f) => f.path),
    ['/home/user/multi/a.txt', '/home/user/multi/b/c.txt', '/home/user/multi/bin.dat'])
  assert.equal(await sbx.files.read('multi/a.txt'), 'A')
  assert.equal(await sbx.files.read('multi/b/c.txt'), 'BC')
  assert.deepEqual([...await sbx.files.read('multi/bin.dat', { format: 'bytes' })], [0, 1, 2, 255])
  const owners = await sbx.commands.run('stat -c %U multi multi/b multi/b/c.txt; touch multi/b/new')
  assert.equal(owners.stdout, `${me}\n${me}\n${me}\n`)
  assert.deepEqual(await sbx.files.write([]), [])
  await sbx.files.remove('multi')
})

await step('files: missing file raises NotFoundError', async () => {
  await rejects(sbx.files.read('no/such/file'), NotFoundError, 'read missing')
  await rejects(sbx.files.getInfo('no/such/file'), NotFoundError, 'getInfo missing')
  await rejects(sbx.files.list('no/such/dir'), NotFoundError, 'list missing')
  await rejects(sbx.files.rename('no/such', 'x'), NotFoundError, 'rename missing')
})

await step('isRunning, getInfo, setTimeout', async () => {
  assert.equal(await sbx.isRunning(), true)
  const info = await sbx.getInfo()
  assert.equal(info.sandboxId, sbx.sandboxId)
  assert.equal(info.templateId, 'base')
  assert.deepEqual(info.metadata, { suite: 'e2b-sdk', run: runId })
  assert.equal(info.state, 'running')
  assert.ok(info.endAt > info.startedAt)
  await sbx.setTimeout(120_000)
  const after = await Sandbox.getInfo(sbx.sandboxId)
  const left = after.endAt.getTime() - Date.now()
  assert.ok(left > 100_000 && left <= 121_000, `endAt is ${left} ms away`)
})

// cloudrun's sandboxes run on machines agentboxd cannot see: getMetrics is its documented 501
// (docs/e2b.md), which the SDK raises as a SandboxError with that status.
const cloudrun = process.env.AGENTBOX_BACKEND.startsWith('cloudrun')
if (cloudrun) await step('getMetrics on cloudrun: 501, SandboxError; unknown and foreign sandboxes', async () => {
  const e = await rejects(sbx.getMetrics(), SandboxError, 'cloudrun getMetrics')
  assert.equal(e.statusCode, 501, e.message)
  assert.match(e.message, /cloudrun backend does not report metrics/)
  await rejects(Sandbox.getMetrics('sb-doesnotexist'), NotFoundError, 'unknown getMetrics')
  await rejects(Sandbox.getMetrics(sbx.sandboxId, { apiKey: process.env.E2B_OTHER_API_KEY }),
    NotFoundError, "another key's getMetrics")
})
else await step('getMetrics: CPU, memory and disk, busy and idle; unknown and foreign sandboxes', async () => {
  const idle = await sbx.getMetrics()
  assert.equal(idle.length, 1)
  const m0 = idle[0]
  assert.ok(m0.timestamp instanceof Date && Math.abs(m0.timestamp.getTime() - Date.now()) < 60_000,
    `timestamp ${m0.timestamp}`)
  assert.ok(Number.isInteger(m0.cpuCount) && m0.cpuCount >= 1, `cpuCount ${m0.cpuCount}`)
  assert.ok(m0.cpuUsedPct >= 0 && m0.cpuUsedPct <= 100, `cpuUsedPct ${m0.cpuUsedPct}`)
  assert.ok(m0.memTotal > 0 && m0.memUsed > 0 && m0.memUsed <= m0.memTotal,
    `memUsed ${m0.memUsed} of ${m0.memTotal}`)
  assert.ok(m0.diskTotal > 0 && m0.diskUsed > 0 && m0.diskUsed <= m0.diskTotal,
    `diskUsed ${m0.diskUsed} of ${m0.diskTotal}`)
  // One process spinning shows within a few readings (the most of them is kept: on a loaded
  // machine the spinner gets only its share of the CPUs, so at least a tenth of a core is asked).
  const spin = await sbx.commands.run('while :; do :; done', { background: true })
  let busy
  for (let i = 0; i < 10; i++) {
    const m = (await Sandbox.getMetrics(sbx.sandboxId))[0]
    if (!busy || m.cpuUsedPct > busy.cpuUsedPct) busy = m
    if (busy.cpuUsedPct * busy.cpuCount >= 50) break
  }
  assert.ok(busy.cpuUsedPct * busy.cpuCount >= 10 && busy.cpuUsedPct > m0.cpuUsedPct,
    `a spinning process shows ${busy.cpuUsedPct}% of ${busy.cpuCount} cores (idle: ${m0.cpuUsedPct}%)`)
  await spin.kill()
  await rejects(Sandbox.getMetrics('sb-doesnotexist'), NotFoundError, 'unknown getMetrics')
  await rejects(Sandbox.getMetrics(sbx.sandboxId, { apiKey: process.env.E2B_OTHER_API_KEY }),
    NotFoundError, "another key's getMetrics")
  console.log(`     metrics (idle): cpu ${m0.cpuUsedPct.toFixed(1)}% of ${m0.cpuCount}, ` +
    `mem ${(m0.memUsed / 2 ** 20).toFixed(1)}/${(m0.memTotal / 2 ** 20).toFixed(0)} MiB, ` +
    `disk ${(m0.diskUsed / 2 ** 20).toFixed(1)}/${(m0.diskTotal / 2 ** 20).toFixed(0)} MiB; ` +
    `busy: cpu ${busy.cpuUsedPct.toFixed(1)}%`)
})

let second
await step('list: metadata filter and pagination', async () => {
  second = await Sandbox.create({ metadata: { suite: 'e2b-sdk', run: runId, which: 'second' } })
  const mine = Sandbox.list({ query: { metadata: { run: runId } }, limit: 1 })
  const ids = []
  let pages = 0
  while (mine.hasNext) {
    const items = await mine.nextItems()
    pages++
    ids.push(...items.map((s) => s.sandboxId))
  }
  assert.equal(pages, 2)
  assert.deepEqual(ids.sort(), [sbx.sandboxId, second.sandboxId].sort())
  const only = await Sandbox.list({ query: { metadata: { run: runId, which: 'second' } } }).nextItems()
  assert.deepEqual(only.map((s) => s.sandboxId), [second.sandboxId])
  const none = await Sandbox.list({ query: { metadata: { run: 'nothing-' + runId } } }).nextItems()
  assert.deepEqual(none, [])
})

await step('bad input: wrong key, another key, unknown sandbox, wrong envd token', async () => {
  await rejects(Sandbox.create({ apiKey: 'e2b_00000000000000000000' }), AuthenticationError, 'wrong key')
  await rejects(Sandbox.list({ apiKey: 'e2b_00000000000000000000' }).nextItems(), AuthenticationError,
    'wrong key list')
  const other = { apiKey: process.env.E2B_OTHER_API_KEY }
  await rejects(Sandbox.connect(sbx.sandboxId, other), NotFoundError, "another key's sandbox")
  await rejects(Sandbox.getInfo(sbx.sandboxId, other), NotFoundError, "another key's getInfo")
  assert.equal(await Sandbox.kill(sbx.sandboxId, other), false)
  assert.deepEqual(await Sandbox.list({ ...other, query: { metadata: { run: runId } } }).nextItems(), [])
  await rejects(Sandbox.connect('sb-doesnotexist'), NotFoundError, 'unknown sandbox')
  await rejects(Sandbox.getInfo('sb-doesnotexist'), NotFoundError, 'unknown getInfo')
  assert.equal(await Sandbox.kill('sb-doesnotexist'), false)
  const t = await rejects(Sandbox.create('no-such-template'), SandboxError, 'unknown template')
  assert.equal(t.statusCode, 404)  // the SDK's create maps only 401/429/503 to classes
  const res = await fetch(`${process.env.E2B_SANDBOX_URL}/process.Process/List`, {
    method: 'POST', body: '{}',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1',
      'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': 'wrong' },
  })
  assert.equal(res.status, 401)
  assert.equal((await res.json()).code, 'unauthenticated')
  // A several-file write whose part names no destination: 400 in envd's error shape.
  const boundary = 'b0undary'
  const bad = await fetch(`${process.env.E2B_SANDBOX_URL}/files`, {
    method: 'POST',
    body: `--${boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--${boundary}--\r\n`,
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}`,
      'e2b-sandbox-id': sbx.sandboxId, 'x-access-token': sbx.envdAccessToken },
  })
  assert.equal(bad.status, 400)
  assert.match((await bad.json()).message, /filename/)
})

await step('same sandbox through the native API and the CLI, both ways', async () => {
  const got = await native('GET', `/v1/sandboxes/${sbx.sandboxId}`)
  assert.equal(got.status, 200)
  assert.equal(got.body.data.labels.run, runId)
  assert.equal(got.body.data.backend, process.env.AGENTBOX_BACKEND.replace(/-session$/, ''))
  await sbx.files.write('/home/user/from-e2b.txt', 'via e2b')
  const ran = await native('POST', `/v1/sandboxes/${sbx.sandboxId}/api/v1/shell/run`,
    { command: 'cat /home/user/from-e2b.txt' })
  assert.equal(ran.body.data.stdout, 'via e2b')
  if (process.env.AGENTBOX_CLI) {
    assert.ok(cli('list').includes(sbx.sandboxId))
    assert.equal(cli('exec', sbx.sandboxId, '--', 'cat', '/home/user/from-e2b.txt'), 'via e2b')
    const created = cli('create').trim()
    const viaSdk = await Sandbox.connect(created)
    assert.equal((await viaSdk.commands.run('whoami')).stdout, `${me}\n`)
    assert.ok((await Sandbox.list().nextItems()).some((s) => s.sandboxId === created))
    cli('rm', created)
    await rejects(Sandbox.getInfo(created), NotFoundError, 'deleted through the CLI')
  }
  // Created natively with the same key (the unix socket's sandboxes belong to "local").
  const made = await fetch(`${process.env.E2B_API_URL}/v1/sandboxes`, {
    method: 'POST', body: JSON.stringify({ labels: { run: runId } }),
    headers: { authorization: `Bearer ${process.env.E2B_API_KEY}`, 'content-type': 'application/json' },
  })
  assert.equal(made.status, 201)
  const id = (await made.json()).data.id
  const fromNative = await Sandbox.connect(id)
  assert.equal((await fromNative.commands.run('echo native')).stdout, 'native\n')
  assert.equal(await Sandbox.kill(id), true)
  assert.equal((await native('GET', `/v1/sandboxes/${id}`)).status, 404)
})

// cloudrun session mode replaces a lost execution by itself (docs/cloudrun.md); what lived in its
// memory goes with it, E2B's `user` account included, which the daemon makes again before the
// sandbox answers calls (docs/e2b.md, On cloudrun). The execution is a container of the emulator.
if (process.env.AGENTBOX_BACKEND === 'cloudrun-session') {
  await step('cloudrun: a lost execution is replaced and the `user` account is back', async () => {
    const executionOf = (sb) => /execution (\S+)/.exec(sb.detail ?? '')?.[1]
    const before = executionOf((await native('GET', `/v1/sandboxes/${sbx.sandboxId}`)).body.data)
    assert.ok(before, 'no execution in the sandbox detail')
    const container = execFileSync('docker', ['ps', '-q', '--filter',
      `label=agentbox.gcp-emulator.execution=${before}`], { encoding: 'utf8' }).trim()
    assert.ok(container, `no container for ${before}`)
    execFileSync('docker', ['kill', container])
    const end = Date.now() + 60_000
    let sb
    for (;;) {
      sb = (await native('GET', `/v1/sandboxes/${sbx.sandboxId}`)).body.data
      if (sb.state === 'running' && executionOf(sb) && executionOf(sb) !== before) break
      assert.ok(Date.now() < end, `not replaced: ${JSON.stringify(sb)}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    const r = await sbx.commands.run('whoami; echo $HOME; pwd; touch ~/again && stat -c %U ~/again')
    assert.equal(r.stdout, `${me}\n/home/user\n/home/user\n${me}\n`)
  })
}

await step('kill: the sandbox is gone for every client', async () => {
  assert.equal(await second.kill(), true)
  await sbx.kill()
  assert.equal(await Sandbox.kill(sbx.sandboxId), false)
  await rejects(Sandbox.getInfo(sbx.sandboxId), NotFoundError, 'getInfo after kill')
  assert.equal(await sbx.isRunning(), false)
  await assert.rejects(sbx.commands.run('echo hi'))
})

console.log(`e2b sdk: ${results.length} steps passed on ${process.env.AGENTBOX_BACKEND}`)
