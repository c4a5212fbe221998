// The demo page: join a room as anyone, and watch its members' presence live
// through the official stream-chat SDK. Everything shown comes from the SDK's
// state and events; nothing here polls the server.
//
// The SDK is not Presence's to ship (its licence): the server serves the
// bundle make demo-sdk built on this machine, if there is one, and the page
// says how to make it otherwise.

const $ = (selector) => document.querySelector(selector);
const config = await (await fetch('config.json')).json();

let StreamChat = null;
let client = null;
let channel = null;

if (!config.sdk_error) {
  try {
    ({ StreamChat } = await import('./stream-chat.js'));
    $('#sdk-version').textContent = config.sdk_version;
  } catch (err) {
    config.sdk_error = `the SDK did not load (${err.message}): run make demo-sdk again`;
  }
}
if (config.sdk_error) {
  $('#no-sdk .why').textContent = config.sdk_error;
  $('#no-sdk').hidden = false;
}
if (!config.dev_tokens) {
  $('#off').hidden = false;
} else if (StreamChat) {
  const form = $('#join');
  form.room.value = new URLSearchParams(location.search).get('room') || 'lobby';
  form.hidden = false;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    join(form.user.value.trim(), form.status.value.trim(), form.room.value.trim());
  });
}

async function join(userId, status, room) {
  const form = $('#join');
  form.querySelector('.error').textContent = '';
  form.querySelector('button').disabled = true;
  try {
    // The page's origin is the server's REST port; the SDK derives its
    // WebSocket URL from it.
    client = new StreamChat(config.api_key, { baseURL: location.origin });
    await client.connectUser({ id: userId, name: userId, status }, client.devToken(userId));
    // Only a member's presence reaches a channel's watchers, and only the
    // backend may make someone a member of a channel they do not own.
    const res = await fetch('join', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: userId, room }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.message);
    channel = client.channel(body.channel_type, body.channel_id);
    await channel.watch({ presence: true });
  } catch (err) {
    form.querySelector('.error').textContent = err.message;
    form.querySelector('button').disabled = false;
    await client?.disconnectUser();
    client = channel = null;
    return;
  }
  history.replaceState(null, '', `?room=${encodeURIComponent(room)}`);
  form.hidden = true;
  $('#room-name').textContent = room;
  $('#me').textContent = userId;
  $('#status').status.value = status;
  $('#room').hidden = false;
  for (const type of ['user.presence.changed', 'user.updated', 'member.added', 'member.removed', 'connection.recovered']) {
    client.on(type, render);
  }
  client.on('connection.changed', (e) => { $('#conn').hidden = e.online; });
  render();
}

// The SDK keeps each member's user as the channel query returned it and
// updates client.state.users with every presence and profile event; a member
// added later is known only from member.added until its first event.
function members() {
  return Object.values(channel.state.members)
    .map((m) => client.state.users[m.user_id] ?? m.user)
    .filter(Boolean)
    .sort((a, b) => (Number(Boolean(b.online)) - Number(Boolean(a.online))) || (a.name || a.id).localeCompare(b.name || b.id));
}

function render() {
  if (!channel) return;
  const list = members();
  $('#count').textContent = `${list.filter((u) => u.online).length} online of ${list.length}`;
  $('#members').replaceChildren(...list.map(row));
}

function row(user) {
  const li = document.createElement('li');
  li.dataset.user = user.id;
  li.dataset.online = String(Boolean(user.online));
  const name = user.name || user.id;

  const avatar = el('span', 'avatar', name.slice(0, 1).toUpperCase());
  avatar.style.background = `hsl(${hue(user.id)} 55% 52%)`;
  const who = el('div', 'who');
  const title = el('div', 'name', name);
  if (user.id === client.userID) title.append(' ', el('small', '', '(you)'));
  who.append(title, el('div', 'status', user.status || ''));
  const seen = el('span', 'seen');
  if (!user.online && user.last_active) seen.dataset.lastActive = user.last_active;
  seen.textContent = seenText(user);
  li.append(avatar, who, seen);
  return li;
}

function el(tag, className, text = '') {
  const e = document.createElement(tag);
  e.className = className;
  e.textContent = text;
  return e;
}

function hue(id) {
  let h = 0;
  for (const c of id) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

function seenText(user) {
  if (user.online) return 'online';
  if (!user.last_active) return 'offline';
  return `last active ${ago(Date.parse(user.last_active))}`;
}

const relative = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return relative.format(-s, 'second');
  if (s < 3600) return relative.format(-Math.floor(s / 60), 'minute');
  if (s < 86400) return relative.format(-Math.floor(s / 3600), 'hour');
  return relative.format(-Math.floor(s / 86400), 'day');
}

// "last active …" moves on by itself between events.
setInterval(() => {
  for (const e of document.querySelectorAll('.seen[data-last-active]')) {
    e.textContent = `last active ${ago(Date.parse(e.dataset.lastActive))}`;
  }
}, 1000);

$('#status').addEventListener('submit', async (e) => {
  e.preventDefault();
  const status = e.target.status.value.trim();
  try {
    await client.partialUpdateUser({ id: client.userID, set: { status } });
  } catch (err) {
    $('#room .error').textContent = err.message;
  }
});

$('#leave').addEventListener('click', async () => {
  await client.disconnectUser();
  client = channel = null;
  $('#room').hidden = true;
  $('#members').replaceChildren();
  const form = $('#join');
  form.querySelector('button').disabled = false;
  form.hidden = false;
});
