// Security rules (issue 7), each tried through the SDK: the forbidden thing is
// refused with the SDK's error shape, and nothing changed.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';

import { StreamChat } from 'stream-chat';

import { API_KEY, API_SECRET, BASE_URL, assertCode, getUser, nextEvent, recordEvents, rejectedCall, rejectedConnect, session, uniqueId } from './helpers.mjs';

const PREVIOUS_SECRET = process.env.PRESENCE_API_SECRET_PREVIOUS;

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** A JWT of payload with any header, HMAC-signed with secret and alg (sha256 for HS256). */
function jwt(payload, { secret = API_SECRET, header = { alg: 'HS256', typ: 'JWT' }, hash = 'sha256', signature } = {}) {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${signature ?? createHmac(hash, secret).update(input).digest('base64url')}`;
}

const now = () => Math.floor(Date.now() / 1000);

describe('tokens', () => {
  const cases = [
    ['a token not valid before a future nbf', (id) => jwt({ user_id: id, nbf: now() + 3600 }), 41],
    ['a token issued in the future (iat)', (id) => jwt({ user_id: id, iat: now() + 3600 }), 42],
    ['an unsigned token (alg none)', (id) => jwt({ user_id: id }, { header: { alg: 'none', typ: 'JWT' }, signature: '' }), 3],
    ['a token signed with HS512', (id) => jwt({ user_id: id }, { header: { alg: 'HS512', typ: 'JWT' }, hash: 'sha512' }), 3],
    ['a token whose header is not JSON', (id) => `${b64url('{not json')}.${b64url({ user_id: id })}.c2ln`, 3],
    ['a token whose signature is not base64url', (id) => jwt({ user_id: id }, { signature: '!!!' }), 3],
  ];
  for (const [name, make, code] of cases) {
    it(`rejects ${name} with code ${code} and creates no user`, { timeout: 30_000 }, async (t) => {
      const s = session(t);
      const id = uniqueId('tok');
      const e = await rejectedConnect(s.client(), { id }, make(id));
      assertCode(e, code, 401, name);
      assert.equal(await getUser(s.server, id), undefined, 'a rejected connect creates no user');
    });
  }

  it('accepts a token signed with the previous secret while rotating, for connects and REST', { timeout: 30_000 }, async (t) => {
    assert.ok(PREVIOUS_SECRET, 'PRESENCE_API_SECRET_PREVIOUS is set for the suite');
    const s = session(t);
    const id = uniqueId('rot');
    const old = new StreamChat(API_KEY, PREVIOUS_SECRET, { baseURL: BASE_URL });
    const { me } = await s.connect({ id }, { token: old.createToken(id) });
    assert.equal(me?.online, true, `connected with the previous secret's token: ${JSON.stringify(me)}`);
    const { users } = await old.queryUsers({ id: { $in: [id] } });
    assert.equal(users.length, 1, 'a server-side call signed with the previous secret works');
  });

  it('never lets a development token act server-side', { timeout: 30_000 }, async () => {
    const dev = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ server: true })}.devtoken`;
    const res = await fetch(`${BASE_URL}/users?api_key=${API_KEY}&payload=${encodeURIComponent('{"filter_conditions":{}}')}`, {
      headers: { Authorization: dev, 'stream-auth-type': 'jwt' },
    });
    const body = await res.json();
    assert.equal(res.status, 401, `status: ${JSON.stringify(body)}`);
    assert.equal(body.code, 43, `code: ${JSON.stringify(body)}`);
  });
});

describe('acting for others needs a server-side token', () => {
  it('refuses a client-side createChannelType and updateChannelType with code 17, changing nothing', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('ct');
    const { client } = await s.connect({ id });
    const name = uniqueId('type').replace(/[^a-z0-9]/gi, '').slice(0, 30);
    const created = await rejectedCall(client.createChannelType({ name, connect_events: true }), 'client-side createChannelType');
    assertCode(created, 17, 403, 'createChannelType');
    await assert.rejects(s.server.getChannelType(name), (err) => err.code === 4 || err.code === 16, 'the type was not created');

    const updated = await rejectedCall(client.updateChannelType('messaging', { connect_events: false }), 'client-side updateChannelType');
    assertCode(updated, 17, 403, 'updateChannelType');
    assert.equal((await s.server.getChannelType('messaging')).connect_events, true, 'messaging keeps presence on');
  });

  it('refuses a user setting their own role, and ignores the fields only the server owns', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const id = uniqueId('own');
    await s.server.upsertUser({ id, name: 'Own' });
    const before = await getUser(s.server, id);
    const { client } = await s.connect({ id });

    const role = await rejectedCall(client.partialUpdateUser({ id, set: { role: 'admin' } }), 'partialUpdateUser of role');
    assertCode(role, 17, 403, 'set role');
    const upsertRole = await rejectedCall(client.upsertUser({ id, role: 'admin' }), 'upsertUser with a role');
    assertCode(upsertRole, 17, 403, 'upsert role');

    await client.partialUpdateUser({
      id,
      set: { online: false, last_active: '2001-01-01T00:00:00Z', created_at: '2001-01-01T00:00:00Z', name: 'Still me' },
    });
    const after = await getUser(s.server, id);
    assert.equal(after.name, 'Still me', 'ordinary fields change');
    assert.equal(after.role, 'user', 'role unchanged');
    assert.equal(after.online, true, 'online is the server\'s: the user is connected');
    assert.equal(after.created_at, before.created_at, 'created_at unchanged');
    assert.notEqual(after.last_active?.slice(0, 4), '2001', `last_active is the server's, got ${after.last_active}`);
  });

  it('refuses a user creating a channel they are not a member of', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const [me, a, b] = [uniqueId('me'), uniqueId('a'), uniqueId('b')];
    await s.server.upsertUsers([{ id: me }, { id: a }, { id: b }]);
    const { client } = await s.connect({ id: me });
    const cid = uniqueId('theirs');
    const err = await rejectedCall(client.channel('messaging', cid, { members: [a, b] }).create(), 'create a channel of others');
    assertCode(err, 17, 403, 'create');
    const { length } = await s.server.queryChannels({ cid: { $in: [`messaging:${cid}`] } });
    assert.equal(length, 0, 'no channel was created');
  });
});

describe('watching follows membership', () => {
  it('refuses watching a messaging channel one is not a member of, and hides it from queryChannels', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const [owner, stranger] = [uniqueId('owner'), uniqueId('stranger')];
    await s.server.upsertUsers([{ id: owner }, { id: stranger }]);
    const id = uniqueId('private');
    await s.server.channel('messaging', id, { members: [owner], created_by_id: owner }).create();
    const { client } = await s.connect({ id: stranger });

    const err = await rejectedCall(client.channel('messaging', id).watch({ presence: true }), 'watch a channel of others');
    assertCode(err, 17, 403, 'watch');
    const found = await client.queryChannels({ cid: { $in: [`messaging:${id}`] } });
    assert.equal(found.length, 0, 'queryChannels does not reveal the channel');
    const [ch] = await s.server.queryChannels({ cid: { $in: [`messaging:${id}`] } });
    assert.deepEqual(Object.keys(ch.state.members), [owner], 'the members are unchanged');
  });

  it('lets anyone watch a livestream channel with presence, but not change it', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const [host, viewer] = [uniqueId('host'), uniqueId('viewer')];
    await s.server.upsertUsers([{ id: host }, { id: viewer }]);
    const id = uniqueId('live');
    await s.server.channel('livestream', id, { members: [host], created_by_id: host }).create();
    const { client } = await s.connect({ id: viewer });

    const ch = client.channel('livestream', id);
    await ch.watch({ presence: true });
    const online = nextEvent(client, 'user.presence.changed', { user: { id: host, online: true } });
    await s.connect({ id: host });
    await online;

    const found = await client.queryChannels({ type: 'livestream', cid: { $in: [`livestream:${id}`] } });
    assert.equal(found.length, 1, 'queryChannels finds the open channel');
    const err = await rejectedCall(ch.update({ topic: 'hijacked' }), 'update a livestream one is not a member of');
    assertCode(err, 17, 403, 'update');
    const [after] = await s.server.queryChannels({ cid: { $in: [`livestream:${id}`] } });
    assert.notEqual(after.data.topic, 'hijacked', 'the channel is unchanged');
  });
});

describe('queryUsers with presence', () => {
  it('watches any user, but never shows an invisible one online', { timeout: 30_000 }, async (t) => {
    const s = session(t);
    const [watcher, ghost, marker] = [uniqueId('w'), uniqueId('ghost'), uniqueId('mrk')];
    await s.server.upsertUsers([{ id: watcher }, { id: ghost, invisible: true }, { id: marker }]);
    const { client } = await s.connect({ id: watcher });
    const log = recordEvents(client);
    const { users } = await client.queryUsers({ id: { $in: [ghost, marker] } }, {}, { presence: true });
    assert.equal(users.length, 2, 'both users are found, with no membership in common');
    await s.connect({ id: ghost });
    // Marker: it connects after the ghost; nothing about the ghost may
    // have arrived by the time the marker's event does.
    await s.connect({ id: marker });
    await log.waitFor({ user: { id: marker, online: true } });
    assert.deepEqual(log.summary(), [`${marker} online`], 'the watcher heard nothing of the invisible user');
    const again = await client.queryUsers({ id: { $in: [ghost] } });
    assert.equal(again.users[0]?.online, false, `the invisible user reads offline: ${JSON.stringify(again.users[0])}`);
  });
});
