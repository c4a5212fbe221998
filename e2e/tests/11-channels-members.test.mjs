// Channels and members the way Stream apps use them (issue 9): distinct
// channels made from a member list, the creator's rights, full and partial
// (nested) updates of custom data, members paged on watch, and a member
// leaving on their own.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { assertCode, memberIds, nextEvent, recordEvents, rejectedCall, session, sorted, uniqueId, waitForOnline } from './helpers.mjs';

test('a distinct channel: the same members in any order give one channel, with a !members- id', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B] = [uniqueId('ann'), uniqueId('bob')];
  await s.server.upsertUsers([{ id: A }, { id: B }]);
  const { client: a } = await s.connect({ id: A });
  const { client: b } = await s.connect({ id: B });

  const fromA = a.channel('messaging', { members: [A, B] });
  const stateA = await fromA.watch();
  const fromB = b.channel('messaging', { members: [B, A] });
  const stateB = await fromB.watch();
  assert.ok(fromA.id?.startsWith('!members-'), `the channel id starts with !members-: got ${fromA.id}`);
  assert.equal(fromB.id, fromA.id, 'both member orders name one channel');
  assert.equal(stateB.channel.cid, stateA.channel.cid);
  assert.deepEqual(memberIds(stateB), sorted([A, B]));
  assert.equal(stateB.channel.member_count, 2);
  assert.strictEqual(a.channel('messaging', { members: [B, A] }), fromA, 'the SDK finds its channel object again by its members');

  // Created by A (the caller), whom B's answer names.
  assert.equal(stateB.channel.created_by?.id, A, `created_by: got ${JSON.stringify(stateB.channel.created_by)}`);
  const { channels } = await s.server.queryChannels({ cid: fromA.cid }).then((cs) => ({ channels: cs }));
  assert.equal(channels.length, 1, 'one channel exists');
});

test('the creator may update their channel without being a member; others may not', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [C, M, O] = [uniqueId('own'), uniqueId('mem'), uniqueId('oth')];
  await s.server.upsertUsers([{ id: C }, { id: M }, { id: O }]);
  const id = uniqueId('owned');
  await s.server.channel('messaging', id, { members: [M], created_by_id: C }).create();

  const { client: c } = await s.connect({ id: C });
  const mine = c.channel('messaging', id);
  const updated = await mine.update({ topic: 'set by the creator' });
  assert.equal(updated.channel.topic, 'set by the creator');
  assert.equal(updated.channel.created_by?.id, C);
  const patched = await mine.updatePartial({ set: { mood: 'calm' } });
  assert.equal(patched.channel.mood, 'calm');
  assert.deepEqual(memberIds(patched), [M], 'the creator did not become a member');

  const { client: o } = await s.connect({ id: O });
  const e = await rejectedCall(o.channel('messaging', id).updatePartial({ set: { mood: 'angry' } }), 'a stranger updating the channel');
  assertCode(e, 17, 403, 'updatePartial by a stranger');
  const [now] = await s.server.queryChannels({ cid: `messaging:${id}` });
  assert.equal(now.data.mood, 'calm', 'the stranger changed nothing');
});

test('custom data of any JSON type; update replaces it, updatePartial sets and unsets nested paths', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, X] = [uniqueId('wat'), uniqueId('edt')];
  await s.server.upsertUsers([{ id: W }, { id: X }]);
  const { client: w } = await s.connect({ id: W });
  const custom = { detail: { rating: 5, topic: 'a', tags: ['x', 'y'] }, open: true, nothing: null, level: 3, list: [1, { k: 'v' }] };
  const channel = w.channel('messaging', uniqueId('data'), { members: [W, X], ...custom });
  const created = await channel.watch();
  for (const [k, v] of Object.entries(custom)) {
    assert.deepEqual(created.channel[k], v, `custom field ${k} at the top level of channel`);
  }

  const { client: x } = await s.connect({ id: X });
  const theirs = x.channel('messaging', channel.id);
  let updated = nextEvent(w, 'channel.updated');
  const answer = await theirs.updatePartial({ set: { 'detail.topic': 'b', 'detail.more.deep': [true], level: 4 }, unset: ['detail.rating', 'nothing', 'detail.absent.path'] });
  const wantDetail = { topic: 'b', tags: ['x', 'y'], more: { deep: [true] } };
  assert.deepEqual(answer.channel.detail, wantDetail, 'the answer has the nested changes');
  assert.equal(answer.channel.level, 4);
  assert.equal('nothing' in answer.channel, false, 'unset removed a top-level field');
  let e = await updated;
  assert.deepEqual(e.channel?.detail, wantDetail, `channel.updated carries the nested changes: got ${JSON.stringify(e.channel)}`);
  assert.deepEqual(channel.data.detail, wantDetail, 'the watcher\'s channel.data follows');
  assert.deepEqual(channel.data.list, custom.list, 'fields the patch did not name are kept');

  const bad = await rejectedCall(theirs.updatePartial({ set: { 'level.sub': 1 } }), 'setting a path through a number');
  assertCode(bad, 4, 400, 'updatePartial through a number');

  updated = nextEvent(w, 'channel.updated');
  const replaced = await theirs.update({ color: 'blue' });
  assert.equal(replaced.channel.color, 'blue');
  for (const k of Object.keys(custom)) {
    assert.equal(k in replaced.channel, false, `update replaced the custom data: ${k} is gone`);
  }
  e = await updated;
  assert.equal(e.channel?.detail, undefined, 'channel.updated after update has no old fields');
  assert.equal(channel.data.detail, undefined, 'nor has the watcher\'s channel.data');
});

test('watch pages members with members: {limit, offset}, in the order they joined', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const ids = Array.from({ length: 6 }, (_, i) => uniqueId(`m${i}`));
  await s.server.upsertUsers(ids.map((id) => ({ id })));
  const id = uniqueId('paged');
  await s.server.channel('messaging', id, { members: ids.slice(0, 3), created_by_id: ids[0] }).create();
  await s.server.channel('messaging', id).addMembers(ids.slice(3));

  const { client: last } = await s.connect({ id: ids[5] });
  const channel = last.channel('messaging', id);
  const state = await channel.watch({ members: { limit: 2, offset: 1 } });
  assert.deepEqual(state.members.map((m) => m.user_id), ids.slice(1, 3), 'the page is members 2 and 3, in joining order');
  assert.equal(state.channel.member_count, 6, 'member_count counts every member');
  assert.equal(state.membership?.user_id, ids[5], 'membership is the caller\'s, though off the page');
  assert.deepEqual(Object.keys(channel.state.members).sort(), sorted(ids.slice(1, 3)), 'the SDK holds the page');
});

test('a member may leave on their own: watchers get member.removed and no more of their presence', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, U, M] = [uniqueId('wat'), uniqueId('lvr'), uniqueId('mrk')];
  await s.server.upsertUsers([{ id: W }, { id: U }, { id: M }]);
  const { client: w } = await s.connect({ id: W });
  const channel = w.channel('messaging', uniqueId('leave'), { members: [W, U, M] });
  await channel.watch({ presence: true });
  const log = recordEvents(w, 'user.presence.changed');

  const { client: u } = await s.connect({ id: U });
  await log.waitFor({ user: { id: U, online: true } });
  const removed = nextEvent(w, 'member.removed', { user: { id: U } });
  const answer = await u.channel('messaging', channel.id).removeMembers([U]);
  assert.equal(answer.channel.member_count, 2);
  await removed;
  assert.equal(channel.state.members[U], undefined, 'the watcher dropped the member');

  // U leaves, then M comes (marker): M's event arrives, U's does not.
  await s.disconnect(u);
  await waitForOnline(s.server, U, false);
  await s.connect({ id: M });
  await log.waitFor({ user: { id: M, online: true } });
  assert.deepEqual(log.summary(), [`${U} online`, `${M} online`], 'nothing of U after U left');

  const e = await rejectedCall(s.connect({ id: U }).then(({ client }) => client.channel('messaging', channel.id).removeMembers([M])), 'a former member removing another');
  assertCode(e, 17, 403, 'removeMembers by a former member');
});

test('members carry custom fields; adding a member again updates it, with member.updated', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, A, B] = [uniqueId('wat'), uniqueId('agt'), uniqueId('bnd')];
  await s.server.upsertUsers([{ id: W }, { id: A, name: 'Alec' }, { id: B }]);
  const id = uniqueId('spies');
  await s.server.channel('messaging', id, { members: [W, { user_id: A, code_name: '006', detail: { rank: 2 } }], created_by_id: W }).create();

  const { client: w } = await s.connect({ id: W });
  const channel = w.channel('messaging', id);
  const state = await channel.watch();
  const alec = state.members.find((m) => m.user_id === A);
  assert.equal(alec?.code_name, '006', `custom member fields at the member's top level: got ${JSON.stringify(alec)}`);
  assert.deepEqual(alec?.detail, { rank: 2 });
  assert.equal(alec?.user?.name, 'Alec');
  assert.equal(alec?.channel_role, 'channel_member');
  assert.equal(alec?.is_moderator, false);

  const added = nextEvent(w, 'member.added', { member: { user_id: B } });
  await s.server.channel('messaging', id).addMembers([{ user_id: B, code_name: '007' }]);
  assert.equal((await added).member?.code_name, '007', 'member.added carries the custom fields');
  assert.equal(channel.state.members[B]?.code_name, '007', 'the watcher holds them');

  // Again, with new fields and a role: the member is updated, not added twice.
  const updated = nextEvent(w, 'member.updated', { member: { user_id: A } });
  const answer = await s.server.channel('messaging', id).addMembers([{ user_id: A, code_name: '009', channel_role: 'channel_moderator' }]);
  const e = await updated;
  assert.equal(e.member?.code_name, '009', `member.updated carries the new fields: got ${JSON.stringify(e.member)}`);
  assert.equal(e.member?.detail, undefined, 'custom fields given again replace the old ones');
  assert.equal(e.member?.channel_role, 'channel_moderator');
  assert.equal(e.member?.is_moderator, true);
  assert.equal(e.user?.id, A);
  assert.equal(answer.members.filter((m) => m.user_id === A).length, 1, 'one member A');
  assert.equal(answer.channel.member_count, 3);
  assert.equal(channel.state.members[A]?.code_name, '009', 'the watcher\'s state follows member.updated');
  assert.equal(channel.state.members[A]?.channel_role, 'channel_moderator');
  assert.ok(new Date(e.member.updated_at) > new Date(e.member.created_at), 'updated_at moves, created_at stays');

  // A plain re-add changes nothing, and says nothing.
  const log = recordEvents(w, 'member.updated');
  await s.server.channel('messaging', id).addMembers([A]);
  const marker = nextEvent(w, 'channel.updated');
  await s.server.channel('messaging', id).updatePartial({ set: { marker: 1 } });
  await marker;
  assert.deepEqual(log.events, [], 'no member.updated for a re-add that changes nothing');
});

test('add_moderators, demote_moderators and assign_roles are for the server; member.updated tells watchers', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, M, N] = [uniqueId('wat'), uniqueId('mod'), uniqueId('non')];
  await s.server.upsertUsers([{ id: W }, { id: M }, { id: N }]);
  const { client: w } = await s.connect({ id: W });
  const channel = w.channel('messaging', uniqueId('mods'), { members: [W, M] });
  await channel.watch();
  const server = s.server.channel('messaging', channel.id);

  let updated = nextEvent(w, 'member.updated', { member: { user_id: M } });
  const promoted = await server.addModerators([M]);
  assert.equal(promoted.members.find((m) => m.user_id === M)?.channel_role, 'channel_moderator');
  assert.equal((await updated).member?.channel_role, 'channel_moderator');
  assert.equal(channel.state.members[M]?.is_moderator, true);

  updated = nextEvent(w, 'member.updated', { member: { user_id: M } });
  await server.demoteModerators([M]);
  assert.equal((await updated).member?.channel_role, 'channel_member');

  updated = nextEvent(w, 'member.updated', { member: { user_id: M } });
  await server.assignRoles([{ user_id: M, channel_role: 'channel_moderator' }]);
  assert.equal((await updated).member?.channel_role, 'channel_moderator');

  const notMember = await rejectedCall(server.addModerators([N]), 'promoting a user who is not a member');
  assertCode(notMember, 4, 400, 'addModerators of a non-member');
  const byClient = await rejectedCall(channel.demoteModerators([M]), 'a client demoting a moderator');
  assertCode(byClient, 17, 403, 'demoteModerators client-side');
  const byClientToo = await rejectedCall(channel.addModerators([W]), 'a client promoting itself');
  assertCode(byClientToo, 17, 403, 'addModerators client-side');
  const [now] = await s.server.queryChannels({ cid: channel.cid });
  const roles = Object.fromEntries(now.state.members ? Object.values(now.state.members).map((m) => [m.user_id, m.channel_role]) : []);
  assert.deepEqual(roles, { [W]: 'channel_member', [M]: 'channel_moderator' }, 'the refused calls changed nothing');
});

test('updateMemberPartial: a member changes its own custom fields, never its role; the server may', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, M, O] = [uniqueId('wat'), uniqueId('mem'), uniqueId('oth')];
  await s.server.upsertUsers([{ id: W }, { id: M }, { id: O }]);
  const id = uniqueId('partial');
  await s.server.channel('messaging', id, { members: [W, O, { user_id: M, code_name: '006', old: 1, detail: { rank: 1, unit: 'x' } }], created_by_id: W }).create();
  const { client: w } = await s.connect({ id: W });
  const channel = w.channel('messaging', id);
  await channel.watch();

  const { client: m } = await s.connect({ id: M });
  const mine = m.channel('messaging', id);
  let updated = nextEvent(w, 'member.updated', { member: { user_id: M } });
  const { channel_member: me } = await mine.updateMemberPartial({ set: { code_name: '007', 'detail.rank': 3 }, unset: ['old', 'detail.unit'] });
  assert.equal(me.user_id, M);
  assert.equal(me.code_name, '007');
  assert.deepEqual(me.detail, { rank: 3 }, 'dotted paths reach into the member\'s nested fields');
  assert.equal('old' in me, false);
  assert.equal(me.user?.id, M, 'the answer carries the user');
  const e = await updated;
  assert.equal(e.member?.code_name, '007', `member.updated: got ${JSON.stringify(e.member)}`);
  assert.equal(channel.state.members[M]?.code_name, '007', 'the watcher\'s state follows');

  const role = await rejectedCall(mine.updateMemberPartial({ set: { channel_role: 'channel_moderator' } }), 'a member changing its own role');
  assertCode(role, 17, 403, 'updateMemberPartial of channel_role client-side');
  assert.match(role.message, /this channel role can only be updated server side/);
  const other = await rejectedCall(mine.partialUpdateMember(O, { set: { code_name: 'x' } }), 'a member changing another member');
  assertCode(other, 17, 403, 'partialUpdateMember of another member');

  updated = nextEvent(w, 'member.updated', { member: { user_id: M } });
  const { channel_member: promoted } = await s.server.channel('messaging', id).updateMemberPartial({ set: { channel_role: 'channel_moderator' } }, { userId: M });
  assert.equal(promoted.channel_role, 'channel_moderator');
  assert.equal(promoted.code_name, '007', 'the rest of the member is kept');
  assert.equal((await updated).member?.channel_role, 'channel_moderator');
  const noUser = await rejectedCall(s.server.channel('messaging', id).updateMemberPartial({ set: { x: 1 } }), 'a server-side member update without user_id');
  assertCode(noUser, 4, 400, 'server-side updateMemberPartial without user_id');

  // archive and pin go through the older route, for the caller's own member.
  const archived = await mine.archive();
  assert.ok(archived.archived_at, `archive sets archived_at: got ${JSON.stringify(archived)}`);
  const pinned = await mine.pin();
  assert.ok(pinned.pinned_at && pinned.archived_at, 'pin sets pinned_at and keeps archived_at');
  const unarchived = await mine.unarchive();
  assert.equal(unarchived.archived_at, undefined, 'unarchive clears archived_at');
  assert.ok(unarchived.pinned_at, 'and keeps pinned_at');
});

test('queryMembers filters, sorts and pages members, each with live presence', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const tag = uniqueId('q');
  const names = ['Alice', 'Albert', 'Bob', 'Carol', 'Dave', 'Eve'];
  const ids = names.map((n) => `${tag}-${n.toLowerCase()}`);
  const [alice, albert, bob, carol, dave, eve] = ids;
  await s.server.upsertUsers(names.map((name, i) => ({ id: ids[i], name })));
  const id = uniqueId('big');
  const server = s.server.channel('messaging', id, { members: [alice, albert], created_by_id: alice });
  await server.create();
  // One at a time, so they join in this order.
  await server.addMembers([{ user_id: bob, code_name: '007' }]);
  await server.addMembers([carol]);
  await server.addMembers([dave]);
  await server.addMembers([eve]);
  await server.addModerators([carol]);

  const { client: a } = await s.connect({ id: alice });
  await s.connect({ id: bob });
  await s.connect({ id: eve, invisible: true });
  await waitForOnline(s.server, bob, true);
  const channel = a.channel('messaging', id);
  await channel.watch();
  const query = async (filter, sort, options) => (await channel.queryMembers(filter, sort, options)).members.map((m) => m.user_id);

  // Alice and Albert joined at once (the channel's creation): ties go by user id.
  const joinOrder = [albert, alice, bob, carol, dave, eve];
  assert.deepEqual(await query({}), joinOrder, 'by default, in the order they joined');
  const { members } = await channel.queryMembers({});
  const byId = Object.fromEntries(members.map((m) => [m.user_id, m]));
  assert.equal(byId[bob].user?.online, true, 'each member carries its user\'s live presence');
  assert.equal(byId[bob].code_name, '007', 'and its custom fields');
  assert.equal(byId[eve].user?.online, false, 'an invisible member reads offline');
  assert.equal(byId[carol].channel_role, 'channel_moderator');

  assert.deepEqual(sorted(await query({ online: true })), sorted([alice, bob]), '{online: true}: live presence, never the invisible member');
  assert.deepEqual(sorted(await query({ name: { $autocomplete: 'al' } })), sorted([alice, albert]), 'name $autocomplete');
  assert.deepEqual(await query({ channel_role: 'channel_moderator' }), [carol], 'channel_role');
  assert.deepEqual(await query({ code_name: '007' }), [bob], 'a custom member field');
  assert.deepEqual(await query({ user_id: { $in: [dave, bob] } }), [bob, dave], 'user_id $in');
  assert.deepEqual(await query({ id: dave }), [dave], 'the user\'s id');

  assert.deepEqual(await query({}, { created_at: -1 }), [eve, dave, carol, bob, albert, alice], 'newest members first (ties still by user id)');
  assert.deepEqual(await query({}, { user_id: 1 }), sorted(ids), 'by user id');
  assert.deepEqual(await query({}, { name: 1 }), [albert, alice, bob, carol, dave, eve], 'by name');
  const active = await query({}, [{ last_active: -1 }, { user_id: 1 }]);
  assert.ok(active.indexOf(bob) < active.indexOf(carol) && active.indexOf(alice) < active.indexOf(carol), `the recently active first: ${active}`);

  assert.deepEqual(await query({}, {}, { limit: 2, offset: 2 }), [bob, carol], 'offset paging');
  assert.deepEqual(await query({}, { user_id: 1 }, { user_id_gt: bob, limit: 2 }), sorted(ids).filter((x) => x > bob).slice(0, 2), 'a user id cursor');
  assert.deepEqual(await query({}, { user_id: -1 }, { user_id_lte: carol }), sorted(ids).filter((x) => x <= carol).reverse(), 'a user id cursor the other way');
  const joined = Object.fromEntries(members.map((m) => [m.user_id, m.created_at]));
  assert.deepEqual(await query({}, {}, { created_at_after: joined[carol] }), [dave, eve], 'a joining-time cursor');
  assert.deepEqual(await query({}, {}, { created_at_before_or_equal: joined[bob] }), [albert, alice, bob], 'and the other way');

  const bad = await rejectedCall(channel.queryMembers({ online: 'yes' }), 'a filter of the wrong type');
  assertCode(bad, 4, 400, 'queryMembers with a bad filter');
});

test('queryMembers finds a distinct channel by its members, and only for those who may read it', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B, O] = [uniqueId('ann'), uniqueId('bob'), uniqueId('out')];
  await s.server.upsertUsers([{ id: A }, { id: B }, { id: O }]);
  const { client: a } = await s.connect({ id: A });
  await a.channel('messaging', { members: [A, B] }).watch();

  const fresh = s.server.channel('messaging', { members: [B, A] }); // no id: the SDK sends the members
  const { members } = await fresh.queryMembers({});
  assert.deepEqual(sorted(members.map((m) => m.user_id)), sorted([A, B]), 'the distinct channel of these members');

  const { client: o } = await s.connect({ id: O });
  const id = (await a.channel('messaging', { members: [A, B] }).watch()).channel.id;
  const denied = await rejectedCall(o.channel('messaging', id).queryMembers({}), 'a stranger querying members');
  assertCode(denied, 17, 403, 'queryMembers by a non-member');
  const missing = await rejectedCall(s.server.channel('messaging', uniqueId('none')).queryMembers({}), 'members of no channel');
  assertCode(missing, 16, 404, 'queryMembers of a channel that does not exist');
});
