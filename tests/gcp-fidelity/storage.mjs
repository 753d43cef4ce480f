// @google-cloud/storage against agentbox-gcp-emulator: uploads (multipart, resumable in one
// and in several chunks), downloads (whole, ranged, with the client's checksum validation),
// list (prefix, delimiter, pages), preconditions, metadata, delete. Credentials come from the
// emulator's metadata server (GCE_METADATA_HOST), through google-auth-library's own GCE path.
import {Storage} from '@google-cloud/storage';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const port = process.env.EMULATOR_PORT;
assert.ok(port, 'EMULATOR_PORT must be set');
const endpoint = `http://127.0.0.1:${port}`;
const storage = new Storage({apiEndpoint: endpoint, useAuthWithCustomEndpoint: true,
                             projectId: 'fidelity', retryOptions: {maxRetries: 2}});

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

// Client quirk (7.x): resumable uploads drop useAuthWithCustomEndpoint and would go out
// unauthenticated to a custom endpoint, which the emulator (like Cloud Storage) refuses with 401.
// The token the client got from the metadata server is added back through an interceptor.
const token = await storage.authClient.getAccessToken();
assert.match(String(token), /^ya29\.emulator-/, 'the token comes from the emulator metadata server');
storage.interceptors.push({request: o => ({...o, headers: {...(o.headers || {}),
                                                          Authorization: `Bearer ${token}`}})});

const [bucket] = await storage.createBucket('fid-node-storage');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gcp-fidelity-'));

await step('bucket get', async () => {
  const [meta] = await bucket.getMetadata();
  assert.equal(meta.name, 'fid-node-storage');
  await assert.rejects(storage.bucket('no-such-bucket-x').getMetadata(), e => e.code === 404);
});

await step('multipart upload + download with checksum validation', async () => {
  const f = bucket.file('dir/hello.txt');
  await f.save('hello, emulator', {resumable: false, contentType: 'text/plain',
                                   metadata: {metadata: {k: 'v'}}});
  const [meta] = await f.getMetadata();
  assert.equal(meta.size, '15');
  assert.equal(meta.contentType, 'text/plain');
  assert.equal(meta.metadata.k, 'v');
  assert.match(meta.generation, /^[0-9]+$/);
  const [data] = await f.download({validation: 'crc32c'});
  assert.equal(data.toString(), 'hello, emulator');
  const [data2] = await f.download({validation: 'md5'});
  assert.equal(data2.toString(), 'hello, emulator');
});

const big = crypto.randomBytes(3 * 1024 * 1024 + 12345);
await step('resumable upload in one request', async () => {
  const f = bucket.file('dir/big-one.bin');
  await f.save(big, {resumable: true});
  const [data] = await f.download();
  assert.ok(data.equals(big));
});

await step('resumable upload in 256 KiB chunks (bucket.upload)', async () => {
  const local = path.join(tmp, 'big.bin');
  fs.writeFileSync(local, big);
  await bucket.upload(local, {destination: 'dir/big-chunks.bin', resumable: true,
                              chunkSize: 256 * 1024});
  const [meta] = await bucket.file('dir/big-chunks.bin').getMetadata();
  assert.equal(Number(meta.size), big.length);
  const out = path.join(tmp, 'back.bin');
  await bucket.file('dir/big-chunks.bin').download({destination: out});
  assert.ok(fs.readFileSync(out).equals(big));
});

await step('ranged download', async () => {
  const [part] = await bucket.file('dir/big-one.bin').download({start: 1000, end: 1999});
  assert.ok(part.equals(big.subarray(1000, 2000)));
  const chunks = [];
  await new Promise((resolve, reject) => {
    bucket.file('dir/big-one.bin').createReadStream({start: big.length - 10})
        .on('data', c => chunks.push(c)).on('end', resolve).on('error', reject);
  });
  assert.ok(Buffer.concat(chunks).equals(big.subarray(big.length - 10)));
});

await step('list with prefix, delimiter and pages', async () => {
  for (let i = 0; i < 7; i++) {
    await bucket.file(`list/${i}.txt`).save(`n${i}`, {resumable: false});
  }
  await bucket.file('list/sub/deep.txt').save('deep', {resumable: false});
  const [files, , resp] = await bucket.getFiles({prefix: 'list/', delimiter: '/',
                                                 autoPaginate: false});
  assert.deepEqual(files.map(f => f.name), [0, 1, 2, 3, 4, 5, 6].map(i => `list/${i}.txt`));
  assert.deepEqual(resp.prefixes, ['list/sub/']);
  const [all] = await bucket.getFiles({prefix: 'list/', maxResults: 3});
  assert.equal(all.length, 3);
  const [everything] = await bucket.getFiles({prefix: 'list/'});  // autoPaginate
  assert.equal(everything.length, 8);
  const [page1, next] = await bucket.getFiles({prefix: 'list/', maxResults: 5,
                                               autoPaginate: false});
  assert.equal(page1.length, 5);
  assert.ok(next && next.pageToken);
  const [page2] = await bucket.getFiles({...next, autoPaginate: false});
  assert.equal(page2.length, 3);
  assert.equal(new Set([...page1, ...page2].map(f => f.name)).size, 8);
});

await step('preconditions (ifGenerationMatch, ifMetagenerationMatch)', async () => {
  const f = bucket.file('pre/obj.txt');
  await f.save('v1', {resumable: false, preconditionOpts: {ifGenerationMatch: 0}});
  await assert.rejects(f.save('again', {resumable: false, preconditionOpts: {ifGenerationMatch: 0}}),
                       e => e.code === 412);
  const [meta] = await f.getMetadata();
  await f.save('v2', {resumable: false, preconditionOpts: {ifGenerationMatch: Number(meta.generation)}});
  await assert.rejects(f.save('v3', {resumable: false,
                                     preconditionOpts: {ifGenerationMatch: Number(meta.generation)}}),
                       e => e.code === 412);
  await assert.rejects(f.delete({ifGenerationMatch: Number(meta.generation)}), e => e.code === 412);
  const [now] = await f.getMetadata();
  await f.setMetadata({metadata: {x: 'y'}}, {ifMetagenerationMatch: Number(now.metageneration)});
  const [after] = await f.getMetadata();
  assert.equal(after.metageneration, '2');
  assert.equal(after.metadata.x, 'y');
  await assert.rejects(f.setMetadata({metadata: {x: 'z'}}, {ifMetagenerationMatch: 1}),
                       e => e.code === 412);
  const [body] = await f.download();
  assert.equal(body.toString(), 'v2');
});

await step('delete', async () => {
  const f = bucket.file('dir/hello.txt');
  await f.delete();
  const [exists] = await f.exists();
  assert.equal(exists, false);
  await assert.rejects(f.delete(), e => e.code === 404);
});

fs.rmSync(tmp, {recursive: true, force: true});
console.log('storage fidelity: all steps passed');
