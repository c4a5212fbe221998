// The filter language through the SDK: $and/$or/$nor/$nin/$autocomplete,
// typed comparisons, multi-key sorts with id tie-breaks, paging, and the
// errors the SDK surfaces for bad queries.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { session, uniqueId } from './helpers.mjs';

const ids = (users) => users.map((u) => u.id);

async function people(s) {
  const tag = uniqueId('tag');
  const mk = (name, extra) => ({ id: uniqueId(name.toLowerCase().replace(/\W/g, '')), name, tag, ...extra });
  const users = {
    ann: mk('Ann Lee', { age: 31, city: 'Oslo', skills: ['go', 'sql'] }),
    bob: mk('Bob Stone', { age: 25, city: 'Rome', skills: ['js'] }),
    cat: mk('Cat Annex', { age: 40, city: 'Oslo' }),
    dan: mk('Dan Lee', { age: 25, city: 'Lima', skills: ['go'] }),
  };
  await s.server.upsertUsers(Object.values(users));
  return { tag, ...users };
}

test('queryUsers combines $and, $or, $nor and $nin', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const { tag, ann, bob, cat, dan } = await people(s);
  const q = async (filter) => ids((await s.server.queryUsers({ tag, ...filter }, [{ id: 1 }])).users).sort();
  const idsOf = (...us) => us.map((u) => u.id).sort();

  assert.deepEqual(await q({ $and: [{ city: 'Oslo' }, { age: { $gte: 35 } }] }), idsOf(cat), '$and of equality and $gte');
  assert.deepEqual(await q({ $or: [{ city: 'Rome' }, { age: { $gt: 35 } }] }), idsOf(bob, cat), '$or');
  assert.deepEqual(await q({ $nor: [{ city: 'Oslo' }] }), idsOf(bob, dan), '$nor');
  assert.deepEqual(await q({ city: { $nin: ['Oslo', 'Lima'] } }), idsOf(bob), '$nin');
  assert.deepEqual(await q({ skills: { $contains: 'go' } }), idsOf(ann, dan), '$contains on an array field');
  assert.deepEqual(await q({ skills: { $exists: false } }), idsOf(cat), '$exists: false matches only missing');
  assert.deepEqual(await q({ age: { $ne: 25 } }), idsOf(ann, cat), '$ne');
  assert.deepEqual(await q({ age: '25' }), [], 'a number never equals a string');
});

test('queryUsers $autocomplete matches word prefixes, case-insensitively', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const { tag, ann, cat, dan } = await people(s);
  const found = ids((await s.server.queryUsers({ tag, name: { $autocomplete: 'le' } })).users).sort();
  assert.deepEqual(found, [ann.id, dan.id].sort(), '"le" matches "Ann Lee" and "Dan Lee"');
  const ann2 = ids((await s.server.queryUsers({ tag, name: { $autocomplete: 'ANN' } })).users).sort();
  assert.deepEqual(ann2, [ann.id, cat.id].sort(), '"ANN" matches "Ann Lee" and "Cat Annex"');
});

test('queryUsers sorts by several keys, breaks ties by id, and pages without overlap', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const { tag, ann, bob, cat, dan } = await people(s);
  const sort = [{ age: 1 }, { city: -1 }];
  const all = ids((await s.server.queryUsers({ tag }, sort)).users);
  // age asc: bob/dan (25) with city desc: Rome before Lima; then ann 31, cat 40.
  assert.deepEqual(all, [bob.id, dan.id, ann.id, cat.id], 'age ascending, then city descending');

  const pages = [];
  for (let offset = 0; offset < 4; offset += 3) {
    pages.push(...ids((await s.server.queryUsers({ tag }, sort, { limit: 3, offset })).users));
  }
  assert.deepEqual(pages, all, 'two pages of 3 give the same order, no overlap, nothing skipped');
});

test('bad queries reject with the SDK error code 4 and name the problem', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const cases = [
    [{ id: { $in: [] } }, /\$in/],
    [{ $or: 'nope' }, /\$or/],
    [{ name: { $autocomplete: 5 } }, /\$autocomplete/],
  ];
  for (const [filter, pattern] of cases) {
    await assert.rejects(s.server.queryUsers(filter), (err) => {
      assert.equal(err.code, 4, `${JSON.stringify(filter)}: code`);
      assert.equal(err.status, 400, `${JSON.stringify(filter)}: status`);
      assert.match(err.message, pattern, `${JSON.stringify(filter)}: message ${err.message}`);
      return true;
    });
  }
  await assert.rejects(s.server.queryUsers({}, {}, { offset: 5000 }), (err) => err.code === 4 && /offset/.test(err.message));
});

test('queryChannels combines $or and $in on members with a multi-key sort', { timeout: 30_000 }, async (t) => {
  const s = session(t);
  const [a, b] = [uniqueId('a'), uniqueId('b')];
  await s.server.upsertUsers([{ id: a }, { id: b }]);
  const tag = uniqueId('t');
  const mk = async (color, size, members) => {
    const ch = s.server.channel('messaging', uniqueId('ch'), { members, color, size, tag, created_by_id: a });
    await ch.create();
    return ch.id;
  };
  const red2 = await mk('red', 2, [a, b]);
  const red1 = await mk('red', 1, [a]);
  const blue = await mk('blue', 3, [b]);
  const green = await mk('green', 4, [a, b]);

  const res = await s.server.queryChannels(
    { tag, $or: [{ color: 'red' }, { color: 'blue' }], members: { $in: [a] } },
    [{ color: -1 }, { size: 1 }],
  );
  assert.deepEqual(res.map((c) => c.id), [red1, red2], 'red channels of a, by size; blue has no a; green is not red or blue');
  const none = await s.server.queryChannels({ tag, color: { $nin: ['red', 'blue', 'green'] } });
  assert.equal(none.length, 0, '$nin of every color');
  void blue;
  void green;
});
