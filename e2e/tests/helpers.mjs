// Shared helpers of the end-to-end suite: the official stream-chat SDK against
// a running Presence server.
//
// The Go harness (allinone/e2e_test.go) starts the all-in-one server on random
// ports and passes PRESENCE_URL, PRESENCE_API_KEY and PRESENCE_API_SECRET.
// Every test makes its own users and channels (uniqueId), so tests never see
// each other's events even though they share one server.
//
// Synchronisation is by events and polling, never by sleeping:
//   - nextEvent(client, type, filter)   the next matching event, or a clear timeout
//   - recordEvents(client, type)        everything of a type from now on, to assert
//                                       exact sequences up to a known marker event
//   - waitFor(predicate)                poll until true
//   - waitForUser(server, id, pred)     poll a server-side queryUsers until true

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { StreamChat } from 'stream-chat';

function required(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(
      `${name} is not set. The e2e suite runs against a server started by the Go harness: ` +
        '`cd allinone && go test -run E2E -v .` (it sets PRESENCE_URL, PRESENCE_API_KEY, PRESENCE_API_SECRET).',
    );
  }
  return v;
}

export const BASE_URL = required('PRESENCE_URL');
export const API_KEY = required('PRESENCE_API_KEY');
export const API_SECRET = required('PRESENCE_API_SECRET');

/** Default time to wait for something the server should do promptly. */
export const TIMEOUT = 5000;

// Every successful connectUser leaves a timer of client.defaultWSTimeout
// (15 s) running: the SDK's StableWSConnection._waitForHealthy races the
// connect against `sleep(timeout)` and never clears the loser. That timer
// would keep each test file's process alive for 15 s after its last connect.
// Unref exactly those timers: they still fire while anything else keeps the
// process busy (a connect in progress holds its socket open), they just do not
// hold the process open by themselves.
const SDK_WS_TIMEOUT = 15_000;
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = function setTimeoutUnrefSDKWait(fn, ms, ...args) {
  const timer = realSetTimeout(fn, ms, ...args);
  if (ms === SDK_WS_TIMEOUT && typeof timer?.unref === 'function') timer.unref();
  return timer;
};

/** A fresh id (valid as user and channel id) so tests never collide. */
export function uniqueId(prefix = 'id') {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** A server-side client (API secret; no WebSocket). */
export function newServerClient() {
  return new StreamChat(API_KEY, API_SECRET, { baseURL: BASE_URL });
}

/** A client-side client, as an app would make it (never StreamChat.getInstance: it is a singleton). */
export function newUserClient({ apiKey = API_KEY } = {}) {
  return new StreamChat(apiKey, { baseURL: BASE_URL, allowServerSideConnect: true });
}

/**
 * A test's resources: a server-side client, and every user client it connects,
 * all disconnected when the test ends (so the process can exit).
 */
export function session(t) {
  const server = newServerClient();
  const clients = new Set();
  t.after(async () => {
    await Promise.allSettled([...clients].map((c) => c.disconnectUser()));
    clients.clear();
  });
  return {
    server,

    /** A user token signed with the server's secret. */
    token(id, exp) {
      return server.createToken(id, exp);
    },

    /** A new, not yet connected user client that is cleaned up with the test. */
    client(opts) {
      const c = newUserClient(opts);
      clients.add(c);
      return c;
    },

    /**
     * connectUser(user, token) on a new client (or the given one).
     * Returns {client, me, response}: me is the connection.ok's own user.
     */
    async connect(user, { token, client } = {}) {
      const c = client ?? this.client();
      clients.add(c);
      const response = await c.connectUser(user, token ?? server.createToken(user.id));
      return { client: c, me: response?.me, response };
    },

    /** disconnectUser() and forget the client. */
    async disconnect(c) {
      await c.disconnectUser();
      clients.delete(c);
    },
  };
}

// ---------------------------------------------------------------- matching

/** Whether value contains every field of pattern (recursively; arrays compare whole). */
export function matches(value, pattern) {
  if (typeof pattern === 'function') return Boolean(pattern(value));
  if (pattern === null || typeof pattern !== 'object' || Array.isArray(pattern)) {
    return Array.isArray(pattern)
      ? JSON.stringify(value) === JSON.stringify(pattern)
      : Object.is(value, pattern);
  }
  if (value === null || typeof value !== 'object') return false;
  return Object.entries(pattern).every(([k, p]) => matches(value[k], p));
}

function describePattern(pattern) {
  if (typeof pattern === 'function') return pattern.description ?? 'matching the predicate';
  return JSON.stringify(pattern);
}

/** A one-line description of an event, e.g. "user.presence.changed bob-1a online". */
export function describeEvent(e) {
  if (!e) return String(e);
  let s = e.type;
  if (e.user) {
    s += ` ${e.user.id}`;
    if ('online' in e.user) s += e.user.online ? ' online' : ' offline';
  }
  if (e.cid) s += ` (${e.cid})`;
  return s;
}

/** "<id> online" / "<id> offline" for a user.presence.changed event. */
export function presenceOf(e) {
  return `${e.user?.id} ${e.user?.online ? 'online' : 'offline'}`;
}

// ---------------------------------------------------------------- waiting

/**
 * Polls predicate (sync or async) until it returns a truthy value, which it
 * returns. On timeout it throws "<message>: timed out after N ms", plus what
 * describe() says about the current state (e.g. "got: ...").
 */
export async function waitFor(predicate, { timeout = TIMEOUT, interval = 20, message = 'condition', describe } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, interval));
  }
  let detail = '';
  if (describe) {
    try {
      detail = `; ${await describe()}`;
    } catch (err) {
      detail = `; (describe failed: ${err.message})`;
    }
  }
  if (lastError) detail += `; last error: ${lastError.message}`;
  throw new Error(`${message}: timed out after ${timeout} ms${detail}`);
}

/**
 * The next event of type on client that matches filter (a partial object such
 * as {user: {id, online: true}} or a predicate). Subscribe BEFORE triggering
 * the action. Rejects after timeout naming what was expected and listing the
 * other events of that type that did arrive.
 */
export function nextEvent(client, type, filter = {}, timeout = TIMEOUT) {
  const others = [];
  let sub;
  let timer;
  const p = new Promise((resolve, reject) => {
    sub = client.on(type, (e) => {
      if (matches(e, filter)) {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve(e);
      } else {
        others.push(e);
      }
    });
    timer = setTimeout(() => {
      sub.unsubscribe();
      reject(
        new Error(
          `expected a ${type} event ${describePattern(filter)} for ${client.userID ?? 'the client'} within ${timeout} ms; ` +
            `got ${others.length ? others.map(describeEvent).join(', ') : 'no other event of that type'}`,
        ),
      );
    }, timeout);
  });
  p.catch(() => {}); // a timeout surfaces where the promise is awaited
  return p;
}

/**
 * Records every event of type on client from now on. log.waitFor(filter)
 * resolves with the first recorded matching event (past or future);
 * log.summary(f) maps the events (default: "<id> online|offline").
 */
export function recordEvents(client, type = 'user.presence.changed') {
  const events = [];
  const sub = client.on(type, (e) => events.push(e));
  return {
    events,
    stop: () => sub.unsubscribe(),
    summary: (f = presenceOf) => events.map(f),
    /** Events about one user, in arrival order. */
    ofUser: (id) => events.filter((e) => e.user?.id === id),
    waitFor(filter, { timeout = TIMEOUT } = {}) {
      return waitFor(() => events.find((e) => matches(e, filter)), {
        timeout,
        message: `expected a ${type} event ${describePattern(filter)} for ${client.userID ?? 'the client'}`,
        describe: () => `got [${events.map(describeEvent).join(', ')}]`,
      });
    },
  };
}

// ---------------------------------------------------------------- users

/** The user as a server-side queryUsers returns it (undefined if absent). */
export async function getUser(server, id) {
  const { users } = await server.queryUsers({ id: { $in: [id] } });
  return users.find((u) => u.id === id);
}

/** Polls a server-side queryUsers until predicate(user) holds; returns the user. */
export async function waitForUser(server, id, predicate, { timeout = TIMEOUT, what } = {}) {
  let last;
  return waitFor(
    async () => {
      last = await getUser(server, id);
      return last && predicate(last) ? last : undefined;
    },
    {
      timeout,
      message: `server-side queryUsers: expected user ${id} ${what ?? describePattern(predicate)}`,
      describe: () => `got ${JSON.stringify(last)}`,
    },
  );
}

/** Waits until the server reports user id online (true) or offline (false). */
export function waitForOnline(server, id, online = true, opts = {}) {
  return waitForUser(server, id, (u) => u.online === online, { what: online ? 'online' : 'offline', ...opts });
}

/** Whether s is a string holding a parseable date. */
export function isDateString(s) {
  return typeof s === 'string' && !Number.isNaN(Date.parse(s));
}

// ---------------------------------------------------------------- errors

/**
 * The {code, StatusCode, message} of a rejected connectUser. The SDK turns a
 * server's error frame into `new Error(JSON.stringify({code, StatusCode,
 * message, isWSFailure}))` (src/connection.ts), so the code is in the message.
 */
export function connectErrorOf(err) {
  try {
    const o = JSON.parse(err.message);
    if (o && typeof o === 'object') return o;
  } catch {
    // not the SDK's JSON form
  }
  return { code: err.code, StatusCode: err.StatusCode, message: err.message };
}

/** connectUser must reject; returns the {code, StatusCode, message} the SDK surfaced. */
export async function rejectedConnect(client, user, token) {
  let result;
  try {
    result = await client.connectUser(user, token);
  } catch (err) {
    return { err, ...connectErrorOf(err) };
  }
  throw new assert.AssertionError({
    message: `connectUser should have been rejected, but it resolved with ${JSON.stringify(result)}`,
  });
}

/** promise must reject with an SDK REST error; returns it. */
export async function rejectedCall(promise, what) {
  try {
    const result = await promise;
    throw new assert.AssertionError({ message: `${what} should have been rejected, but it returned ${JSON.stringify(result)}` });
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

/** An SDK error (from rejectedCall or rejectedConnect) has this code and HTTP status. */
export function assertCode(e, code, status, what) {
  assert.equal(e.code, code, `${what}: expected code ${code}, got ${e.code}: ${e.err?.message ?? e.message}`);
  const got = e.StatusCode ?? e.status;
  assert.equal(got, status, `${what}: expected status ${status}, got ${got}`);
}

/** Sorted copy, for comparing sets of ids. */
export function sorted(xs) {
  return [...xs].sort();
}

/** The member user ids of a channel state answer (the array form). */
export function memberIds(state) {
  return sorted(state.members.map((m) => m.user_id ?? m.user?.id));
}

/** The member users of a channel state answer by user id. */
export function memberUsers(state) {
  return Object.fromEntries(state.members.map((m) => [m.user_id ?? m.user?.id, m.user]));
}
