// Membership changes as the SDK sees them: addMembers / removeMembers /
// update / updatePartial / delete send Stream's member.added,
// member.removed, channel.updated and channel.deleted to the channel's
// watchers, and presence routing follows membership at once: a new member's
// transitions reach the channel's watchers, a removed member's and a deleted
// channel's do not.
//
// "Does not arrive" is proved with a marker: another user's event that the
// watcher receives after the one that must not come, on the same path.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { nextEvent, recordEvents, session, uniqueId, waitFor, waitForOnline } from './helpers.mjs';

/** Waits until the SDK's channel state shows member id with online === want. */
function memberOnline(channel, id, want) {
  return waitFor(() => channel.state.members[id]?.user?.online === want, {
    message: `channel.state.members[${id}].user.online should become ${want}`,
    describe: () => `got ${JSON.stringify(channel.state.members[id])}`,
  });
}

/** A connected watcher W of a new messaging channel with members [W, ...others]. */
async function watchedChannel(s, W, others) {
  const { client: w } = await s.connect({ id: W });
  await waitForOnline(s.server, W, true);
  const channel = w.channel('messaging', uniqueId('chat'), { members: [W, ...others] });
  await channel.watch({ presence: true });
  return { w, channel };
}

test('addMembers: the watcher gets member.added, and the new member presence from then on', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M] = [uniqueId('wat'), uniqueId('new'), uniqueId('mrk')];
  await s.server.upsertUsers([{ id: W }, { id: U, name: 'Una' }, { id: M }]);
  const { w, channel } = await watchedChannel(s, W, [M]);
  const log = recordEvents(w, 'user.presence.changed');

  // Before: U is no member, so U's connect reaches W through nothing.
  const before = await s.connect({ id: U });
  await s.connect({ id: M });
  await log.waitFor({ user: { id: M, online: true } });
  assert.deepEqual(log.ofUser(U), [], 'no presence from a user who is not a member');
  await s.disconnect(before.client);
  await waitForOnline(s.server, U, false);

  const added = nextEvent(w, 'member.added', { member: { user_id: U } });
  const onChannel = new Promise((resolve) => {
    const sub = channel.on('member.added', (e) => {
      sub.unsubscribe();
      resolve(e);
    });
  });
  // Server-side, so the watcher learns of it only through the event.
  await s.server.channel('messaging', channel.id).addMembers([U]);
  const e = await added;
  assert.equal(e.cid, channel.cid, 'member.added cid');
  assert.equal(e.channel_type, 'messaging');
  assert.equal(e.channel_id, channel.id);
  assert.equal(e.user?.id, U, `member.added user: got ${JSON.stringify(e.user)}`);
  assert.equal(e.member?.user?.name, 'Una', `member.added member.user: got ${JSON.stringify(e.member)}`);
  assert.equal(e.member?.channel_role, 'channel_member');
  assert.equal((await onChannel).member?.user_id, U, 'the channel listener gets member.added too');
  assert.equal(channel.state.members[U]?.user?.id, U, 'the SDK added the member to channel.state.members');
  assert.equal(channel.state.members[U]?.user?.online, false, 'the new member is offline');

  // U connects: W hears it through the channel, at once.
  const { client: u } = await s.connect({ id: U });
  const online = await log.waitFor({ user: { id: U, online: true } });
  assert.equal(online.user.name, 'Una');
  assert.equal(w.state.users[U]?.online, true, 'the SDK merged the event into client.state.users');
  // The SDK merges presence into channel.state.members only for members it
  // got from a channel query (member.added registers no user reference, with
  // Stream too); after the next query the new member tracks presence as well.
  await channel.watch({ presence: true });
  assert.equal(channel.state.members[U]?.user?.online, true, 'the re-queried state has the new member online');
  await s.disconnect(u);
  await log.waitFor({ user: { id: U, online: false } });
  await memberOnline(channel, U, false);
  assert.deepEqual(log.summary(), [`${M} online`, `${U} online`, `${U} offline`], 'presence events W received, in order');
});

test('removeMembers: the watcher gets member.removed, and no presence of the removed user after it', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M] = [uniqueId('wat'), uniqueId('old'), uniqueId('mrk')];
  await s.server.upsertUsers([{ id: W }, { id: U }, { id: M }]);
  const { w, channel } = await watchedChannel(s, W, [U, M]);
  const log = recordEvents(w, 'user.presence.changed');

  // While a member, U's connect reaches W.
  const { client: u } = await s.connect({ id: U });
  await log.waitFor({ user: { id: U, online: true } });

  const removed = nextEvent(w, 'member.removed', { user: { id: U } });
  await s.server.channel('messaging', channel.id).removeMembers([U]);
  const e = await removed;
  assert.equal(e.cid, channel.cid, 'member.removed cid');
  assert.equal(e.member?.user_id, U, `member.removed member: got ${JSON.stringify(e.member)}`);
  assert.equal(channel.state.members[U], undefined, 'the SDK dropped the member from channel.state.members');
  assert.ok(channel.state.members[M], 'the other members stay');

  // U disconnects, then M connects (marker): M's event arrives, U's does not.
  await s.disconnect(u);
  await waitForOnline(s.server, U, false);
  const { client: m } = await s.connect({ id: M });
  await log.waitFor({ user: { id: M, online: true } });
  // U connects again, then M disconnects (marker).
  await s.connect({ id: U });
  await waitForOnline(s.server, U, true);
  await s.disconnect(m);
  await log.waitFor({ user: { id: M, online: false } });
  assert.deepEqual(
    log.summary(),
    [`${U} online`, `${M} online`, `${M} offline`],
    'after member.removed, nothing about the removed user reaches the watcher',
  );
});

test('update and updatePartial: the watcher gets channel.updated and channel.data follows', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, X] = [uniqueId('wat'), uniqueId('edt')];
  await s.server.upsertUsers([{ id: W }, { id: X }]);
  const { w, channel } = await watchedChannel(s, W, [X]);

  // Another member changes it from their own client.
  const { client: x } = await s.connect({ id: X });
  const theirs = x.channel('messaging', channel.id);
  await theirs.watch();

  let updated = nextEvent(w, 'channel.updated');
  await theirs.update({ color: 'blue' });
  let e = await updated;
  assert.equal(e.cid, channel.cid, 'channel.updated cid');
  assert.equal(e.channel?.color, 'blue', `channel.updated channel: got ${JSON.stringify(e.channel)}`);
  assert.equal(e.user?.id, X, 'channel.updated names who changed it');
  assert.equal(channel.data.color, 'blue', 'the SDK applied the update to channel.data');
  assert.equal(channel.data.cid, channel.cid, 'channel.data keeps the channel fields');
  assert.ok(Array.isArray(channel.data.own_capabilities), 'the watcher keeps its own_capabilities');

  updated = nextEvent(w, 'channel.updated');
  await theirs.updatePartial({ set: { mood: 'calm' }, unset: ['color'] });
  e = await updated;
  assert.equal(e.channel?.mood, 'calm');
  assert.equal(channel.data.mood, 'calm', 'updatePartial set reached channel.data');
  assert.equal(channel.data.color, undefined, 'updatePartial unset reached channel.data');
});

test('delete: the watcher gets channel.deleted and then no presence of the former members', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, P, K] = [uniqueId('wat'), uniqueId('usr'), uniqueId('pre'), uniqueId('mrk')];
  await s.server.upsertUsers([{ id: W }, { id: U }, { id: P }, { id: K }]);
  const { w, channel } = await watchedChannel(s, W, [U, P]);
  // The marker's path: another channel W watches, holding only K.
  await w.channel('messaging', uniqueId('other'), { members: [W, K] }).watch({ presence: true });
  const log = recordEvents(w, 'user.presence.changed');

  // While the channel exists, P's connect reaches W through it.
  const { client: p } = await s.connect({ id: P });
  await log.waitFor({ user: { id: P, online: true } });

  const deleted = nextEvent(w, 'channel.deleted', { cid: channel.cid });
  await channel.delete();
  const e = await deleted;
  assert.equal(e.channel?.cid, channel.cid, `channel.deleted channel: got ${JSON.stringify(e.channel)}`);
  assert.ok(e.channel?.deleted_at, 'channel.deleted carries deleted_at');
  await waitFor(() => w.activeChannels[channel.cid] === undefined, { message: 'the SDK forgets the deleted channel' });

  // P disconnects and U connects: neither reaches W; K (marker) does.
  await s.disconnect(p);
  await waitForOnline(s.server, P, false);
  await s.connect({ id: U });
  await waitForOnline(s.server, U, true);
  await s.connect({ id: K });
  await log.waitFor({ user: { id: K, online: true } });
  assert.deepEqual(log.summary(), [`${P} online`, `${K} online`], 'after channel.deleted, nothing about its former members');
});
