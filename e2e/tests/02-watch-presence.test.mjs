// "Listening to presence changes" via channel.watch({presence: true}): the
// watcher gets members' online state in the channel state and one
// user.presence.changed per transition, in order (I1, I2).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  isDateString,
  memberIds,
  memberUsers,
  recordEvents,
  session,
  sorted,
  uniqueId,
  waitFor,
  waitForOnline,
} from './helpers.mjs';

/** Waits until the SDK's channel state shows member id with online === want. */
function memberOnline(channel, id, want) {
  return waitFor(() => channel.state.members[id]?.user?.online === want, {
    message: `channel.state.members[${id}].user.online should become ${want}`,
    describe: () => `got ${JSON.stringify(channel.state.members[id]?.user)}`,
  });
}

test('watch with presence returns the members with their online state', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B] = [uniqueId('amy'), uniqueId('ben')];
  await s.server.upsertUsers([
    { id: A, name: 'Amy' },
    { id: B, name: 'Ben' },
  ]);

  const { client: a } = await s.connect({ id: A });
  await waitForOnline(s.server, A, true);
  const channel = a.channel('messaging', uniqueId('chat'), { members: [A, B] });
  const state = await channel.watch({ presence: true });

  assert.deepEqual(memberIds(state), sorted([A, B]), 'members of the watched channel');
  const users = memberUsers(state);
  assert.equal(users[A]?.online, true, `member ${A} (connected): got ${JSON.stringify(users[A])}`);
  assert.equal(users[B]?.online, false, `member ${B} (never connected): got ${JSON.stringify(users[B])}`);
  assert.equal(users[B]?.name, 'Ben', 'member users carry their profile');
  assert.equal(channel.state.members[B]?.user?.online, false, 'the SDK channel state has the member');
  assert.equal(state.channel.cid, channel.cid, 'state.channel.cid');
});

test('a watcher gets exactly one online and one offline event as a member connects and disconnects', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B, C] = [uniqueId('amy'), uniqueId('ben'), uniqueId('cat')];
  await s.server.upsertUsers([
    { id: A, name: 'Amy' },
    { id: B, name: 'Ben' },
    { id: C, name: 'Cat' },
  ]);
  const { client: a } = await s.connect({ id: A });
  await waitForOnline(s.server, A, true);
  const channel = a.channel('messaging', uniqueId('chat'), { members: [A, B, C] });
  await channel.watch({ presence: true });
  const log = recordEvents(a, 'user.presence.changed');

  // B connects: A hears about it, and the SDK merges it into the channel state.
  const { client: b } = await s.connect({ id: B });
  const online = await log.waitFor({ user: { id: B, online: true } });
  assert.equal(online.user.name, 'Ben', `the event carries the user: got ${JSON.stringify(online.user)}`);
  assert.ok(isDateString(online.user.last_active), `the event carries last_active: got ${JSON.stringify(online.user)}`);
  assert.equal('invisible' in online.user, false, 'the invisible flag is not shown to other users');
  await memberOnline(channel, B, true);

  // B disconnects.
  await s.disconnect(b);
  const offline = await log.waitFor({ user: { id: B, online: false } });
  assert.ok(isDateString(offline.user.last_active), `the offline event carries last_active: got ${JSON.stringify(offline.user)}`);
  assert.ok(
    Date.parse(offline.user.last_active) >= Date.parse(online.user.last_active),
    `last_active must not go back: online event ${online.user.last_active}, offline event ${offline.user.last_active}`,
  );
  await memberOnline(channel, B, false);

  // Marker: C connects; by the time C's event arrives, B's are all in.
  await s.connect({ id: C });
  await log.waitFor({ user: { id: C, online: true } });
  assert.deepEqual(log.summary(), [`${B} online`, `${B} offline`, `${C} online`], 'presence events A received, in order');
});

test('a watcher sees offline then online, in order, when a member disconnects and connects again', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M] = [uniqueId('wat'), uniqueId('usr'), uniqueId('mrk')];
  await s.server.upsertUsers([{ id: W }, { id: U }, { id: M }]);
  const { client: w } = await s.connect({ id: W });
  await waitForOnline(s.server, W, true);
  const channel = w.channel('messaging', uniqueId('chat'), { members: [W, U, M] });
  await channel.watch({ presence: true });
  const log = recordEvents(w, 'user.presence.changed');

  const first = await s.connect({ id: U });
  await log.waitFor({ user: { id: U, online: true } });

  await s.disconnect(first.client);
  await log.waitFor({ user: { id: U, online: false } });
  await memberOnline(channel, U, false);

  // Reconnect on a fresh client, as an app restarting would.
  await s.connect({ id: U });
  await waitFor(() => log.ofUser(U).length >= 3, {
    message: `expected ${U} to come back online`,
    describe: () => `got [${log.summary().join(', ')}]`,
  });
  await memberOnline(channel, U, true);

  // Marker: M connects; nothing more about U may have arrived before it.
  await s.connect({ id: M });
  await log.waitFor({ user: { id: M, online: true } });
  assert.deepEqual(
    log.summary(),
    [`${U} online`, `${U} offline`, `${U} online`, `${M} online`],
    'presence events the watcher received, in order',
  );
  const reconnected = await waitForOnline(s.server, U, true);
  assert.equal(reconnected.online, true);
});

test('the same client can disconnect and connect again and is seen online again', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U] = [uniqueId('wat'), uniqueId('usr')];
  await s.server.upsertUsers([{ id: W }, { id: U }]);
  const { client: w } = await s.connect({ id: W });
  await waitForOnline(s.server, W, true);
  await w.channel('messaging', uniqueId('chat'), { members: [W, U] }).watch({ presence: true });
  const log = recordEvents(w, 'user.presence.changed');

  const { client: u } = await s.connect({ id: U });
  await log.waitFor({ user: { id: U, online: true } });
  await u.disconnectUser();
  await log.waitFor({ user: { id: U, online: false } });
  const again = await u.connectUser({ id: U }, s.token(U));
  assert.equal(again.me?.online, true, `me after reconnecting: got ${JSON.stringify(again.me)}`);
  await waitFor(() => log.ofUser(U).length >= 3, {
    message: `expected ${U} to come back online`,
    describe: () => `got [${log.summary().join(', ')}]`,
  });
  assert.deepEqual(log.summary(), [`${U} online`, `${U} offline`, `${U} online`], 'presence events, in order');
});
