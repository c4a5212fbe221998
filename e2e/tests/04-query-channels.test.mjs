// queryChannels on a custom field with presence and watch: only the matching
// channels come back, their members carry presence, and a member who is in
// several watched channels still produces one event per transition (I2).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { recordEvents, session, sorted, uniqueId, waitFor, waitForOnline } from './helpers.mjs';

test('queryChannels on a custom field returns only the matching channels, with member presence, and relays presence once', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B, C, D] = [uniqueId('amy'), uniqueId('ben'), uniqueId('cat'), uniqueId('dan')];
  await s.server.upsertUsers([{ id: A }, { id: B, name: 'Ben' }, { id: C }, { id: D }]);

  const make = async (color, members) => {
    const channel = s.server.channel('messaging', uniqueId(color), { color, members, created_by_id: members[0] });
    await channel.create();
    return channel.cid;
  };
  const green1 = await make('green', [A, B, C]);
  const green2 = await make('green', [A, B]);
  await make('red', [A, B]); // wrong color
  await make('green', [D, B]); // A is not a member

  const { client: a } = await s.connect({ id: A });
  await waitForOnline(s.server, A, true);
  const channels = await a.queryChannels({ color: 'green', members: { $in: [A] } }, {}, { presence: true, watch: true });

  assert.deepEqual(sorted(channels.map((c) => c.cid)), sorted([green1, green2]), 'the green channels A is a member of');
  for (const ch of channels) {
    assert.equal(ch.data.color, 'green', `${ch.cid} carries its custom field at the top level of channel`);
    assert.equal(ch.state.members[A]?.user?.online, true, `${ch.cid}: member ${A} is online, got ${JSON.stringify(ch.state.members[A])}`);
    assert.equal(ch.state.members[B]?.user?.online, false, `${ch.cid}: member ${B} is offline, got ${JSON.stringify(ch.state.members[B])}`);
  }
  const log = recordEvents(a, 'user.presence.changed');

  // B is in both watched channels: one event, and both channel states update.
  await s.connect({ id: B });
  const ev = await log.waitFor({ user: { id: B, online: true } });
  assert.equal(ev.user.name, 'Ben', `the event carries the user: got ${JSON.stringify(ev.user)}`);
  for (const ch of channels) {
    await waitFor(() => ch.state.members[B]?.user?.online === true, {
      message: `${ch.cid}: channel.state.members[${B}].user.online should become true`,
      describe: () => `got ${JSON.stringify(ch.state.members[B]?.user)}`,
    });
  }

  // D is only in a channel A does not watch: nothing about D may arrive.
  await s.connect({ id: D });
  await waitForOnline(s.server, D, true);

  // Marker: C (member of green1) connects.
  await s.connect({ id: C });
  await log.waitFor({ user: { id: C, online: true } });
  assert.deepEqual(log.summary(), [`${B} online`, `${C} online`], 'presence events A received (B once although in two channels; nothing about D)');
});

test('queryChannels without presence still returns the channels with member online state', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B] = [uniqueId('amy'), uniqueId('ben')];
  const color = uniqueId('hue'); // a value no other test uses
  await s.server.upsertUsers([{ id: A }, { id: B }]);
  const cid = (await s.server.channel('messaging', uniqueId('chat'), { color, members: [A, B], created_by_id: A }).create()).channel.cid;

  await s.connect({ id: B });
  await waitForOnline(s.server, B, true);
  const { client: a } = await s.connect({ id: A });
  const channels = await a.queryChannels({ color }, {}, { watch: false, presence: false });
  assert.deepEqual(channels.map((c) => c.cid), [cid], 'the one channel with that color');
  assert.equal(channels[0].state.members[B]?.user?.online, true, `member ${B}: got ${JSON.stringify(channels[0].state.members[B])}`);
});
