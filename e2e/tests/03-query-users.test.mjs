// queryUsers: $in filters, sorting by last_active and name, limit/offset
// pagination, and "listening to presence changes" via queryUsers with
// presence: true.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { isDateString, recordEvents, session, uniqueId, waitForOnline } from './helpers.mjs';

const ids = (users) => users.map((u) => u.id);

test('queryUsers with $in sorts by last_active and by name, and paginates with limit and offset', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const anna = { id: uniqueId('anna'), name: 'Anna' };
  const bert = { id: uniqueId('bert'), name: 'Bert' };
  const cleo = { id: uniqueId('cleo'), name: 'Cleo' };
  const other = { id: uniqueId('zed'), name: 'Aaron' }; // outside the filter
  await s.server.upsertUsers([anna, bert, cleo, other]);

  // Connect in the order Bert, Cleo, Anna, each only once the previous one is
  // active, so last_active grows in that order (and differs from name order).
  for (const u of [bert, cleo, anna]) {
    await s.connect({ id: u.id });
    await waitForOnline(s.server, u.id, true);
  }
  const filter = { id: { $in: [anna.id, bert.id, cleo.id] } };

  const byActivity = (await s.server.queryUsers(filter, { last_active: -1 })).users;
  assert.deepEqual(ids(byActivity), [anna.id, cleo.id, bert.id], 'sorted by last_active descending');
  for (const u of byActivity) {
    assert.ok(isDateString(u.last_active), `${u.id} has a last_active date string, got ${JSON.stringify(u.last_active)}`);
    assert.equal(u.online, true, `${u.id} is online`);
  }
  const times = byActivity.map((u) => Date.parse(u.last_active));
  assert.ok(times[0] >= times[1] && times[1] >= times[2], `last_active values descend: got ${byActivity.map((u) => u.last_active)}`);

  const oldestFirst = (await s.server.queryUsers(filter, { last_active: 1 })).users;
  assert.deepEqual(ids(oldestFirst), [bert.id, cleo.id, anna.id], 'sorted by last_active ascending');

  const byName = (await s.server.queryUsers(filter, { name: 1 })).users;
  assert.deepEqual(ids(byName), [anna.id, bert.id, cleo.id], 'sorted by name ascending');

  const byNameDesc = (await s.server.queryUsers(filter, [{ name: -1 }])).users;
  assert.deepEqual(ids(byNameDesc), [cleo.id, bert.id, anna.id], 'sorted by name descending');

  const page1 = (await s.server.queryUsers(filter, { name: 1 }, { limit: 2, offset: 0 })).users;
  const page2 = (await s.server.queryUsers(filter, { name: 1 }, { limit: 2, offset: 2 })).users;
  const page3 = (await s.server.queryUsers(filter, { name: 1 }, { limit: 2, offset: 4 })).users;
  assert.deepEqual(ids(page1), [anna.id, bert.id], 'page 1 (limit 2, offset 0)');
  assert.deepEqual(ids(page2), [cleo.id], 'page 2 (limit 2, offset 2)');
  assert.deepEqual(ids(page3), [], 'page 3 (limit 2, offset 4) is empty');
});

test('a client-side queryUsers sees other users with their presence', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, on, off] = [uniqueId('wat'), uniqueId('on'), uniqueId('off')];
  await s.server.upsertUsers([{ id: W }, { id: on, name: 'On' }, { id: off, name: 'Off' }]);
  await s.connect({ id: on, status: 'here' });
  await waitForOnline(s.server, on, true);
  const { client: w } = await s.connect({ id: W });

  const { users } = await w.queryUsers({ id: { $in: [on, off] } }, { name: 1 });
  assert.deepEqual(ids(users), [off, on], 'sorted by name ascending ("Off" < "On")');
  assert.equal(users[0].online, false, `${off} never connected: got ${JSON.stringify(users[0])}`);
  assert.equal(users[1].online, true, `${on} is connected: got ${JSON.stringify(users[1])}`);
  assert.equal(users[1].status, 'here', 'status');
  assert.ok(isDateString(users[1].last_active), `last_active: got ${JSON.stringify(users[1].last_active)}`);
});

test('queryUsers with presence: true delivers user.presence.changed for the returned users', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [W, P1, P2, X] = [uniqueId('wat'), uniqueId('pa'), uniqueId('pb'), uniqueId('px')];
  await s.server.upsertUsers([{ id: W }, { id: P1, name: 'P One' }, { id: P2, name: 'P Two' }, { id: X }]);
  const { client: w } = await s.connect({ id: W });

  const { users } = await w.queryUsers({ id: { $in: [P1, P2] } }, { name: 1 }, { presence: true });
  assert.deepEqual(ids(users), [P1, P2], 'the queried users');
  assert.deepEqual(users.map((u) => u.online), [false, false], 'both offline before connecting');
  const log = recordEvents(w, 'user.presence.changed');

  // X is not watched: its connecting must not reach W.
  await s.connect({ id: X });
  const p1 = await s.connect({ id: P1 });
  await log.waitFor({ user: { id: P1, online: true } });
  await s.connect({ id: P2 });
  await log.waitFor({ user: { id: P2, online: true } });
  await s.disconnect(p1.client);
  await log.waitFor({ user: { id: P1, online: false } });

  assert.deepEqual(
    log.summary(),
    [`${P1} online`, `${P2} online`, `${P1} offline`],
    'presence events the watcher received, in order (and nothing about the unwatched user)',
  );
  assert.equal(w.state.users[P1]?.online, false, 'the SDK merged the events into client.state.users');
  assert.equal(w.state.users[P2]?.online, true, 'the SDK merged the events into client.state.users');
});
