// Errors in the SDK's format (PROTOCOL.md §3, §7; I7): rejected connects carry
// Stream's error codes, REST errors carry .code and .status, and a refused
// request changes nothing.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { StreamChat } from 'stream-chat';

import { API_KEY, BASE_URL, getUser, rejectedCall, rejectedConnect, session, uniqueId } from './helpers.mjs';

describe('connect errors', () => {
  it('rejects a connect with a wrong API key with code 2', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('key');
    const client = s.client({ apiKey: `${API_KEY}-wrong` });
    const e = await rejectedConnect(client, { id }, s.token(id));
    assert.equal(e.code, 2, `expected error code 2 (AccessKeyError), got ${e.code}: ${e.err.message}`);
    assert.equal(client._getConnectionID(), undefined, 'no connection id after a rejected connect');
  });

  it('rejects a token signed with another secret with code 43', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('sig');
    const forged = new StreamChat(API_KEY, 'not-the-secret-of-this-server', { baseURL: BASE_URL }).createToken(id);
    const e = await rejectedConnect(s.client(), { id }, forged);
    assert.equal(e.code, 43, `expected error code 43 (TokenSignatureInvalid), got ${e.code}: ${e.err.message}`);
    assert.equal(e.StatusCode, 401, `expected StatusCode 401, got ${e.StatusCode}: ${e.err.message}`);
  });

  it('rejects an expired token with code 40, without retrying a static token', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('exp');
    const expired = s.token(id, Math.floor(Date.now() / 1000) - 60);
    const started = Date.now();
    const e = await rejectedConnect(s.client(), { id }, expired);
    assert.equal(e.code, 40, `expected error code 40 (TokenExpired), got ${e.code}: ${e.err.message}`);
    assert.equal(e.StatusCode, 401, `expected StatusCode 401, got ${e.StatusCode}: ${e.err.message}`);
    assert.equal(e.isWSFailure, false, `an auth rejection is not a WebSocket failure: ${e.err.message}`);
    assert.ok(Date.now() - started < 10_000, `the rejection should be immediate, took ${Date.now() - started} ms`);
  });

  it('creates no user and no presence for a rejected connect', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('nobody');
    const forged = new StreamChat(API_KEY, 'not-the-secret-of-this-server', { baseURL: BASE_URL }).createToken(id);
    await rejectedConnect(s.client(), { id, name: 'Nobody' }, forged);
    const user = await getUser(s.server, id);
    assert.equal(user, undefined, `a rejected connect must not create the user, got ${JSON.stringify(user)}`);
  });
});

describe('REST errors', () => {
  it('rejects an unknown filter operator with code 4 and status 400 naming the operator', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const err = await rejectedCall(s.server.queryUsers({ name: { $nosuchop: 1 } }), 'queryUsers with $nosuchop');
    assert.equal(err.code, 4, `expected code 4 (InputError), got ${err.code}: ${err.message}`);
    assert.equal(err.status, 400, `expected HTTP status 400, got ${err.status}: ${err.message}`);
    assert.match(err.message, /\$nosuchop/, 'the message names the bad operator');
    assert.match(err.message, /^StreamChat error code 4: /, 'the SDK read the code and message from the body');
  });

  it('rejects the same bad filter from a client-side caller too', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('bad');
    const { client } = await s.connect({ id });
    const err = await rejectedCall(client.queryUsers({ id: { $nosuchop: [id] } }), 'client-side queryUsers with $nosuchop');
    assert.equal(err.code, 4, `expected code 4, got ${err.code}: ${err.message}`);
    assert.equal(err.status, 400, `expected HTTP status 400, got ${err.status}: ${err.message}`);
    assert.match(err.message, /\$nosuchop/, 'the message names the bad operator');
  });

  it('refuses a client-side upsertUser of another user with code 17 and status 403, changing nothing', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const [me, victim] = [uniqueId('me'), uniqueId('victim')];
    await s.server.upsertUsers([{ id: me }, { id: victim, name: 'Victim' }]);
    const { client } = await s.connect({ id: me });

    const err = await rejectedCall(client.upsertUser({ id: victim, name: 'Hacked' }), 'upsertUser of another user');
    assert.equal(err.code, 17, `expected code 17 (NotAllowed), got ${err.code}: ${err.message}`);
    assert.equal(err.status, 403, `expected HTTP status 403, got ${err.status}: ${err.message}`);
    assert.equal((await getUser(s.server, victim))?.name, 'Victim', 'the other user is unchanged');
  });

  it('refuses a client-side partialUpdateUser of another user with code 17 and status 403, changing nothing', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const [me, victim] = [uniqueId('me'), uniqueId('victim')];
    await s.server.upsertUsers([{ id: me }, { id: victim, name: 'Victim' }]);
    const { client } = await s.connect({ id: me });

    const err = await rejectedCall(
      client.partialUpdateUser({ id: victim, set: { name: 'Hacked', invisible: true } }),
      'partialUpdateUser of another user',
    );
    assert.equal(err.code, 17, `expected code 17 (NotAllowed), got ${err.code}: ${err.message}`);
    assert.equal(err.status, 403, `expected HTTP status 403, got ${err.status}: ${err.message}`);
    const after = await getUser(s.server, victim);
    assert.equal(after?.name, 'Victim', `the other user's name is unchanged, got ${JSON.stringify(after)}`);
    assert.notEqual(after?.invisible, true, `the other user is not made invisible, got ${JSON.stringify(after)}`);
  });

  it('lets a user update their own user client-side', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('self');
    await s.server.upsertUser({ id, name: 'Before' });
    const { client } = await s.connect({ id });
    const res = await client.partialUpdateUser({ id, set: { name: 'After', status: 'busy' } });
    assert.equal(res.users[id]?.name, 'After', `answer: ${JSON.stringify(res.users)}`);
    const user = await getUser(s.server, id);
    assert.equal(user?.name, 'After', 'name');
    assert.equal(user?.status, 'busy', 'status');
  });

  it('rejects a REST call with a wrong API key with code 2', { timeout: 30_000 }, async () => {
    const wrong = new StreamChat(`${API_KEY}-wrong`, 'irrelevant-secret', { baseURL: BASE_URL });
    const err = await rejectedCall(wrong.queryUsers({ id: { $in: ['x'] } }), 'queryUsers with a wrong api key');
    assert.equal(err.code, 2, `expected code 2 (AccessKeyError), got ${err.code}: ${err.message}`);
    assert.equal(err.status, 401, `expected HTTP status 401, got ${err.status}: ${err.message}`);
  });

  it('rejects a REST call signed with another secret with code 43', { timeout: 30_000 }, async () => {
    const forged = new StreamChat(API_KEY, 'not-the-secret-of-this-server', { baseURL: BASE_URL });
    const err = await rejectedCall(forged.queryUsers({ id: { $in: ['x'] } }), 'queryUsers with a forged server token');
    assert.equal(err.code, 43, `expected code 43 (TokenSignatureInvalid), got ${err.code}: ${err.message}`);
    assert.equal(err.status, 401, `expected HTTP status 401, got ${err.status}: ${err.message}`);
  });
});
