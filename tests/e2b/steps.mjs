// What the programs run by run-e2b-sdk.sh share (sdk.mjs, sdk-cloudrun-job.mjs): named steps
// that print ok/FAIL with their time, and the check that a promise rejects with an error class.
import assert from 'node:assert/strict'

// The names of the steps that passed, in order.
export const results = []

// Runs one step; a failure is printed, sets the exit code and ends the program (rethrown).
export async function step(name, fn) {
  const t0 = performance.now()
  try {
    await fn()
    results.push(name)
    console.log(`ok   ${name} (${(performance.now() - t0).toFixed(0)} ms)`)
  } catch (e) {
    console.error(`FAIL ${name}: ${e?.stack ?? e}`)
    process.exitCode = 1
    throw e
  }
}

// Awaits `promise`, which must reject with an instance of `cls`; returns that error.
export async function rejects(promise, cls, name) {
  try {
    await promise
  } catch (e) {
    assert.ok(e instanceof cls, `${name}: expected ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`)
    return e
  }
  assert.fail(`${name}: expected ${cls.name}, nothing was thrown`)
}
