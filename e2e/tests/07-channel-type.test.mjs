// A channel type with connect_events off carries no presence events: watching
// such a channel with presence: true tells nothing about its members'
// transitions. (Changes the shared "team" type; restores it at the end.)

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { recordEvents, session, uniqueId, waitForOnline } from './helpers.mjs';

test('updateChannelType switches connect_events and getChannelType reports it', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const name = 'gaming';
  const original = await s.server.getChannelType(name);
  assert.equal(original.name, name, `getChannelType(${name}): got ${JSON.stringify(original)}`);
  assert.equal(typeof original.connect_events, 'boolean', `connect_events is a boolean, got ${JSON.stringify(original)}`);
  try {
    const off = await s.server.updateChannelType(name, { connect_events: false });
    assert.equal(off.connect_events, false, `the update's answer: got ${JSON.stringify(off)}`);
    assert.equal((await s.server.getChannelType(name)).connect_events, false, 'getChannelType after switching off');
    const on = await s.server.updateChannelType(name, { connect_events: true });
    assert.equal(on.connect_events, true, `the update's answer: got ${JSON.stringify(on)}`);
    assert.equal((await s.server.getChannelType(name)).connect_events, true, 'getChannelType after switching on');
  } finally {
    await s.server.updateChannelType(name, { connect_events: original.connect_events });
  }
});

test('a watcher gets no presence events through a channel whose type has connect_events off', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [A, B, C] = [uniqueId('amy'), uniqueId('ben'), uniqueId('cat')];
  await s.server.upsertUsers([{ id: A }, { id: B }, { id: C }]);

  const off = await s.server.updateChannelType('team', { connect_events: false });
  try {
    assert.equal(off.connect_events, false, `updateChannelType answer: got ${JSON.stringify(off)}`);

    const { client: a } = await s.connect({ id: A });
    await waitForOnline(s.server, A, true);
    await a.channel('team', uniqueId('quiet'), { members: [A, B] }).watch({ presence: true });
    await a.channel('messaging', uniqueId('loud'), { members: [A, C] }).watch({ presence: true });
    const log = recordEvents(a, 'user.presence.changed');

    // B is only in the team channel: A must hear nothing.
    await s.connect({ id: B });
    await waitForOnline(s.server, B, true);

    // Marker: C, in the messaging channel, connects.
    await s.connect({ id: C });
    await log.waitFor({ user: { id: C, online: true } });
    assert.deepEqual(log.summary(), [`${C} online`], 'the only presence event A received is C\'s');
  } finally {
    const restored = await s.server.updateChannelType('team', { connect_events: true });
    assert.equal(restored.connect_events, true, `restoring team: got ${JSON.stringify(restored)}`);
  }
});
