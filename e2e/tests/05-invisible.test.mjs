// "Invisible" from Stream's presence docs: an invisible user reads as offline
// to everyone (watchers, other users, server-side reads), while their own `me`
// and server-side reads carry invisible: true (I1).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { getUser, memberUsers, recordEvents, session, uniqueId, waitForOnline } from './helpers.mjs';

/**
 * W watches a channel holding W, U and a marker user M, with presence; returns
 * W's client, the channel and the log of W's presence events.
 */
async function watcherOf(s, W, U, M) {
  const { client: w } = await s.connect({ id: W });
  await waitForOnline(s.server, W, true);
  const channel = w.channel('messaging', uniqueId('chat'), { members: [W, U, M] });
  await channel.watch({ presence: true });
  const log = recordEvents(w, 'user.presence.changed');
  return { w, channel, log };
}

/** Asserts how another user (client w) sees invisible user U: offline, no flag. */
async function assertOthersSeeOffline(w, U) {
  const { users } = await w.queryUsers({ id: { $in: [U] } });
  assert.equal(users.length, 1, `client-side queryUsers finds ${U}`);
  assert.equal(users[0].online, false, `another user sees the invisible user offline: got ${JSON.stringify(users[0])}`);
  assert.equal('invisible' in users[0], false, `another user must not see the invisible flag: got ${JSON.stringify(users[0])}`);
}

/** Asserts the server-side view of U: {invisible: true, online: false}. */
async function assertServerSeesInvisible(server, U) {
  const user = await getUser(server, U);
  assert.equal(user?.invisible, true, `server-side queryUsers shows invisible: true, got ${JSON.stringify(user)}`);
  assert.equal(user?.online, false, `server-side queryUsers shows online: false, got ${JSON.stringify(user)}`);
  return user;
}

test('a user made invisible by the server connects without anyone seeing them online', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M] = [uniqueId('wat'), uniqueId('inv'), uniqueId('mrk')];
  await s.server.upsertUsers([{ id: W }, { id: U, name: 'Ghost', invisible: true }, { id: M }]);
  const { w, channel, log } = await watcherOf(s, W, U, M);
  const before = await getUser(s.server, U);

  const { me } = await s.connect({ id: U });
  assert.equal(me?.invisible, true, `the invisible user's own me carries invisible: true, got ${JSON.stringify(me)}`);

  await assertServerSeesInvisible(s.server, U);
  await assertOthersSeeOffline(w, U);
  const ghost = memberUsers(await channel.query({ state: true }))[U];
  assert.equal(ghost?.online, false, `the channel state shows the invisible member offline: got ${JSON.stringify(ghost)}`);
  assert.equal('invisible' in (ghost ?? {}), false, `the channel state must not show other users the flag: got ${JSON.stringify(ghost)}`);

  // Marker: M connects; no event about U may have arrived before it.
  await s.connect({ id: M });
  await log.waitFor({ user: { id: M, online: true } });
  assert.deepEqual(log.summary(), [`${M} online`], 'presence events the watcher received (nothing about the invisible user)');

  const after = await assertServerSeesInvisible(s.server, U);
  assert.equal(after.last_active, before.last_active, 'last_active stays frozen while invisible');
});

test('an invisible user who turns visible with partialUpdateUser is seen online, and offline when invisible again', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M] = [uniqueId('wat'), uniqueId('inv'), uniqueId('mrk')];
  await s.server.upsertUser({ id: W });
  await s.server.upsertUser({ id: M });
  await s.server.upsertUser({ id: U, invisible: true });
  const { w, log } = await watcherOf(s, W, U, M);
  const { client: u, me } = await s.connect({ id: U });
  assert.equal(me?.invisible, true, `me.invisible: got ${JSON.stringify(me)}`);

  // Client-side, on the user's own record (how the docs do it).
  const visible = await u.partialUpdateUser({ id: U, set: { invisible: false } });
  assert.notEqual(visible.users[U]?.invisible, true, `the answer shows the user visible: got ${JSON.stringify(visible.users[U])}`);
  const online = await log.waitFor({ user: { id: U, online: true } });
  assert.equal('invisible' in online.user, false, `the event does not show the flag: got ${JSON.stringify(online.user)}`);
  const seen = await waitForOnline(s.server, U, true);
  assert.notEqual(seen.invisible, true, `server-side: no longer invisible, got ${JSON.stringify(seen)}`);

  const hidden = await u.partialUpdateUser({ id: U, set: { invisible: true } });
  assert.equal(hidden.users[U]?.invisible, true, `the user's own answer shows invisible: true, got ${JSON.stringify(hidden.users[U])}`);
  await log.waitFor({ user: { id: U, online: false } });
  await assertServerSeesInvisible(s.server, U);
  await assertOthersSeeOffline(w, U);

  // Marker: M connects; U's transitions are exactly the two above.
  await s.connect({ id: M });
  await log.waitFor({ user: { id: M, online: true } });
  assert.deepEqual(log.summary(), [`${U} online`, `${U} offline`, `${M} online`], 'presence events the watcher received, in order');
});

test('connecting with invisible: true hides the user, and it persists across a reconnect without the field', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M1, M2] = [uniqueId('wat'), uniqueId('inv'), uniqueId('mra'), uniqueId('mrb')];
  await s.server.upsertUsers([{ id: W }, { id: U, name: 'Ghost' }, { id: M1 }, { id: M2 }]);
  const { client: w } = await s.connect({ id: W });
  await waitForOnline(s.server, W, true);
  const state = await w.channel('messaging', uniqueId('chat'), { members: [W, U, M1, M2] }).watch({ presence: true });
  assert.equal(memberUsers(state)[U]?.online, false, 'U starts offline');
  const log = recordEvents(w, 'user.presence.changed');
  const before = await getUser(s.server, U);

  // First connection, invisible at connect.
  const first = await s.connect({ id: U, invisible: true });
  assert.equal(first.me?.invisible, true, `me.invisible after connecting invisible: got ${JSON.stringify(first.me)}`);
  await assertServerSeesInvisible(s.server, U);
  await assertOthersSeeOffline(w, U);
  await s.connect({ id: M1 });
  await log.waitFor({ user: { id: M1, online: true } });
  assert.deepEqual(log.summary(), [`${M1} online`], 'nothing about the invisible user before marker 1');

  // Reconnect without the field: still invisible.
  await s.disconnect(first.client);
  const second = await s.connect({ id: U });
  assert.equal(second.me?.invisible, true, `me.invisible after reconnecting without the field: got ${JSON.stringify(second.me)}`);
  await assertServerSeesInvisible(s.server, U);
  await assertOthersSeeOffline(w, U);
  await s.connect({ id: M2 });
  await log.waitFor({ user: { id: M2, online: true } });
  assert.deepEqual(log.summary(), [`${M1} online`, `${M2} online`], 'nothing about the invisible user before marker 2');
  const after = await assertServerSeesInvisible(s.server, U);
  assert.equal(after.last_active, before.last_active, 'last_active stays frozen while invisible');

  // The second connection is live: turning visible shows the user online.
  await second.client.partialUpdateUser({ id: U, set: { invisible: false } });
  await log.waitFor({ user: { id: U, online: true } });
  assert.deepEqual(log.summary(), [`${M1} online`, `${M2} online`, `${U} online`], 'presence events, in order');
});
