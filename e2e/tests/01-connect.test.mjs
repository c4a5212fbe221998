// "Connect with status" from Stream's presence docs: a user connects with a
// custom status and everyone sees them online with it.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isDateString, session, uniqueId, waitForOnline } from './helpers.mjs';

const STATUS = 'Going to the gym';

test('connectUser with a status resolves with connection.ok and me online carrying the status', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const id = uniqueId('gym');

  const { client, me, response } = await s.connect({ id, name: 'Gym Goer', status: STATUS });

  assert.equal(response.type, 'connection.ok', `connectUser resolved with ${JSON.stringify(response)}`);
  assert.equal(typeof response.connection_id, 'string', 'connection.ok carries a connection_id');
  assert.ok(response.connection_id.length > 0, 'connection_id is not empty');
  assert.equal(client._getConnectionID(), response.connection_id, 'the SDK stored the connection id');
  assert.equal(client.user.status, STATUS, 'client.user.status');

  assert.ok(me, `connection.ok has no me: ${JSON.stringify(response)}`);
  assert.equal(me.id, id, 'me.id');
  assert.equal(me.online, true, `me.online: got ${JSON.stringify(me)}`);
  assert.equal(me.status, STATUS, 'me.status');
  assert.equal(me.name, 'Gym Goer', 'me.name');
  assert.ok(isDateString(me.last_active), `me.last_active should be a date string, got ${JSON.stringify(me.last_active)}`);
  assert.notEqual(me.invisible, true, 'a visible user is not invisible');
});

test('a server-side queryUsers shows the connected user online with status and a recent last_active', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const id = uniqueId('gym');
  const before = Date.now();

  await s.connect({ id, name: 'Gym Goer', status: STATUS });

  const user = await waitForOnline(s.server, id, true);
  assert.equal(user.status, STATUS, 'status');
  assert.equal(user.name, 'Gym Goer', 'name');
  assert.ok(isDateString(user.last_active), `last_active should be a date string, got ${JSON.stringify(user.last_active)}`);
  const lastActive = Date.parse(user.last_active);
  assert.ok(
    lastActive >= before - 5000 && lastActive <= Date.now() + 5000,
    `last_active ${user.last_active} should be about now (${new Date(before).toISOString()})`,
  );
  assert.notEqual(user.invisible, true, 'a visible user is not invisible');
});

test('a status set at connect is kept after the user disconnects, and the user reads as offline', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const id = uniqueId('gym');

  const { client } = await s.connect({ id, status: STATUS });
  await waitForOnline(s.server, id, true);
  await s.disconnect(client);

  const user = await waitForOnline(s.server, id, false);
  assert.equal(user.status, STATUS, 'status after disconnect');
  assert.ok(isDateString(user.last_active), `last_active after disconnect: got ${JSON.stringify(user.last_active)}`);
});
