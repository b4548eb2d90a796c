// The bot's WeChat gateway: one Wechaty puppet (one WeChat account) served over
// wechaty-puppet-service as plaintext gRPC, for `python -m bot run` (docs/wechat.md).
//
//   WECHATY_PUPPET_SERVICE_TOKEN=<secret> node gateway.mjs        (or `make gateway`)
//
// Environment (the token and endpoint are the names the bot reads too):
//   WECHATY_PUPPET_SERVICE_TOKEN     required; the shared secret the bot must present
//   WECHATY_PUPPET_SERVICE_ENDPOINT  host:port to listen on, default 127.0.0.1:8788. Plaintext gRPC
//                                    (the Python client has no TLS): keep it on loopback or a private net
//   WECHATY_PUPPET                   wechaty-puppet-wechat4u (default) | wechaty-puppet-padlocal |
//                                    wechaty-puppet-mock (tests); only the chosen one is loaded
//   WECHATY_PUPPET_PADLOCAL_TOKEN    the PadLocal token (required with wechaty-puppet-padlocal)
//   WECHATY_GATEWAY_DATA_DIR         where the session lives, default ./data (created 0700):
//                                    <dir>/<puppet>.memory-card.json, a Wechaty memory card (0600)
//   WECHATY_GATEWAY_MAX_MSG_MB       gRPC receive limit for files from the bot, default 64
//   WECHATY_LOG                      Wechaty's own log level on stderr (silent|error|warn|info|verbose|silly),
//                                    default warn
//
// Output: one line per event on stdout, "<UTC time> gateway: <what happened>"; on a scan event the
// login QR code itself (and its URL). Repeated puppet errors are printed once, not once per retry.
// Exit codes: 0 after SIGTERM/SIGINT, 2 bad settings (one line on stderr), 1 anything else fatal.
//
// The gateway owns the puppet: it starts it itself (so the QR code shows before any bot connects)
// and a client's Stop/Start RPCs (python-wechaty sends both on every connect) leave it running:
// wechaty-puppet-wechat4u's stop() logs the account out on WeChat's server and drops the saved session.
//
// With WECHATY_PUPPET=wechaty-puppet-mock (the bot's end-to-end tests) it also speaks JSON lines:
// events on stdout (among the log lines), commands on stdin (see the "mock puppet" section below).
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { PuppetServer } from 'wechaty-puppet-service'
import { grpc } from 'wechaty-grpc'
import * as PUPPET from 'wechaty-puppet'
import { MemoryCard } from 'memory-card'
import qrcodeTerminal from 'qrcode-terminal'

const DEFAULT_PUPPET = 'wechaty-puppet-wechat4u'
const PUPPETS = {
  'wechaty-puppet-wechat4u': { short: 'wechat4u', stopOnExit: false },
  'wechaty-puppet-padlocal': { short: 'padlocal', stopOnExit: true },
  'wechaty-puppet-mock': { short: 'mock', stopOnExit: true },
}

const now = () => new Date().toISOString().slice(0, 19) + 'Z'
const say = (msg) => process.stdout.write(`${now()} gateway: ${msg}\n`)
const fail = (code, msg) => {
  process.stderr.write(`gateway: ${msg}\n`)
  process.exit(code)
}
const oneLine = (text, max = 240) => {
  const first = String(text ?? '').split('\n').map(s => s.trim()).find(Boolean) || 'unknown error'
  return first.length > max ? first.slice(0, max) + '...' : first
}
const STATUS = PUPPET.types.ScanStatus
let stopping = false // set once by shutdown()
const verbose = () => ['verbose', 'silly'].includes(process.env.WECHATY_LOG)

// -- settings ------------------------------------------------------------------------------------
const puppetName = (process.env.WECHATY_PUPPET || DEFAULT_PUPPET).trim()
const spec = PUPPETS[puppetName]
if (!spec) {
  fail(2, `WECHATY_PUPPET=${puppetName} is not supported; use one of ${Object.keys(PUPPETS).join(', ')}`)
}
const TOKEN = (process.env.WECHATY_PUPPET_SERVICE_TOKEN || '').trim()
if (!TOKEN) {
  fail(2, 'WECHATY_PUPPET_SERVICE_TOKEN is not set: choose a secret (e.g. `openssl rand -hex 16`) and ' +
    'give the bot the same value (docs/wechat.md)')
}
if (!/^[A-Za-z0-9._~-]+$/.test(TOKEN)) {
  fail(2, 'WECHATY_PUPPET_SERVICE_TOKEN may hold only letters, digits and . _ ~ - (the bot sends it as a gRPC authority)')
}
const ENDPOINT = (process.env.WECHATY_PUPPET_SERVICE_ENDPOINT || '127.0.0.1:8788').trim().replace(/^[a-z]+:\/\//, '')
const endpointMatch = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(ENDPOINT)
if (!endpointMatch || Number(endpointMatch[2]) < 1 || Number(endpointMatch[2]) > 65535) {
  fail(2, `WECHATY_PUPPET_SERVICE_ENDPOINT must be host:port (e.g. 127.0.0.1:8788), got ${JSON.stringify(ENDPOINT)}`)
}
const LOOPBACK = /^(127\.|localhost$|\[::1\]$)/.test(endpointMatch[1])
const PADLOCAL_TOKEN = (process.env.WECHATY_PUPPET_PADLOCAL_TOKEN || '').trim()
if (puppetName === 'wechaty-puppet-padlocal' && !PADLOCAL_TOKEN) {
  fail(2, 'wechaty-puppet-padlocal needs WECHATY_PUPPET_PADLOCAL_TOKEN (a paid token from pad-local.com)')
}
const DATA_DIR = path.resolve(process.env.WECHATY_GATEWAY_DATA_DIR || 'data')
const MAX_MSG_MB = Number(process.env.WECHATY_GATEWAY_MAX_MSG_MB || 64)
if (!(MAX_MSG_MB > 0)) fail(2, 'WECHATY_GATEWAY_MAX_MSG_MB must be a positive number')
PUPPET.log.level(process.env.WECHATY_LOG || 'warn')

// The session file holds the account's login cookies: readable by this user only.
process.umask(0o077)
try {
  fs.mkdirSync(DATA_DIR, { recursive: true, mode: 0o700 })
} catch (e) {
  fail(2, `cannot create the data dir ${DATA_DIR}: ${oneLine(e.message)}`)
}

// The last line of defence against a hundred-line stack trace: one line, then (for a throw) exit 1.
// wechat4u and padlocal leave some promises unhandled on network errors; those are logged, not fatal.
process.on('unhandledRejection', (e) => {
  say(`puppet error (ignored): ${oneLine(e?.message ?? e)}`)
  if (verbose() && e?.stack) process.stderr.write(e.stack + '\n')
})
process.on('uncaughtException', (e) => {
  process.stderr.write(`gateway: unexpected error, exiting: ${oneLine(e?.message ?? e)}\n`)
  if (verbose() && e?.stack) process.stderr.write(e.stack + '\n')
  process.exit(1)
})

// PuppetServer builds its grpc.Server from this (unexported) object; grpc-js's default 4 MiB
// receive limit would cap bot -> gateway files near 3 MB (they travel as base64 JSON).
// (import.meta.resolve needs Node 20.6; before that, the package sits next to this file.)
const serviceEntry = typeof import.meta.resolve === 'function'
  ? import.meta.resolve('wechaty-puppet-service')
  : new URL('./node_modules/wechaty-puppet-service/dist/esm/src/mod.js', import.meta.url).href
const { GRPC_OPTIONS } = await import(new URL('./config.js', serviceEntry).href)
GRPC_OPTIONS['grpc.max_receive_message_length'] = MAX_MSG_MB * 1024 * 1024

// -- the puppet ----------------------------------------------------------------------------------
let mock = null // the test driver, with wechaty-puppet-mock only
let puppet
try {
  if (puppetName === 'wechaty-puppet-wechat4u') {
    const { PuppetWechat4u } = await import('wechaty-puppet-wechat4u')
    puppet = new PuppetWechat4u()
  } else if (puppetName === 'wechaty-puppet-padlocal') {
    const { PuppetPadlocal } = await import('wechaty-puppet-padlocal')
    puppet = new PuppetPadlocal({ token: PADLOCAL_TOKEN })
  } else {
    mock = await makeMock()
    puppet = mock.puppet
  }
} catch (e) {
  fail(1, `cannot load ${puppetName}: ${oneLine(e.message)} (run \`npm ci\` in deploy/gateway)`)
}

// The session: a Wechaty memory card on disk, as Wechaty itself gives its puppet ("puppet" slot).
const card = new MemoryCard({ name: path.join(DATA_DIR, spec.short) })
const SESSION_FILE = path.join(DATA_DIR, `${spec.short}.memory-card.json`)
try {
  JSON.parse(fs.readFileSync(SESSION_FILE, 'utf8'))
} catch (e) {
  if (e.code !== 'ENOENT') { // unreadable (a crash mid-write?): keep it aside, log in anew
    fs.renameSync(SESSION_FILE, `${SESSION_FILE}.bad`)
    say(`the session file ${SESSION_FILE} is not valid (${oneLine(e.message)}); moved to ${SESSION_FILE}.bad: a new scan is needed`)
  }
}
try {
  await card.load()
} catch (e) {
  fail(1, `cannot read the session file ${SESSION_FILE}: ${oneLine(e.message)}; move it away to log in with a new scan`)
}
puppet.setMemory(card.multiplex('puppet'))

// Puppets emit {gerror: JSON} error payloads (wechaty-puppet's emit() turns every error into one);
// python-wechaty only understands {data: string}: it raises on any other field and drops its event
// stream. So errors travel as one line of text, past that conversion.
const rawEmit = puppet.emit.bind(puppet)
puppet.emit = (name, ...args) => (name === 'error'
  ? EventEmitter.prototype.emit.call(puppet, 'error', { data: errorText(args[0]) })
  : rawEmit(name, ...args))

function errorText (payload, depth = 0) {
  if (payload === undefined || payload === null) return 'unknown error'
  if (typeof payload === 'string') {
    if (depth < 3 && /^\s*\{/.test(payload)) {
      try { return errorText(JSON.parse(payload), depth + 1) } catch (_) {}
    }
    return oneLine(payload.replace(/^\s*(Axios)?Error: /, ''))
  }
  if (depth < 3 && typeof payload === 'object') {
    for (const key of ['gerror', 'data', 'details', 'message']) {
      if (payload[key] !== undefined && payload[key] !== '') return errorText(payload[key], depth + 1)
    }
  }
  return oneLine(String(payload))
}

// Messages of wechaty-puppet-service that every python-wechaty connect triggers (its Stop RPC
// comes before any event stream): harmless, and they would fill the terminal.
const HARMLESS = /eventStreamManager is not busy|this\.eventStream\.on\(close\) eventStream is undefined/
for (const level of ['error', 'warn']) {
  const original = PUPPET.log[level].bind(PUPPET.log)
  PUPPET.log[level] = (prefix, text, ...args) => (HARMLESS.test(String(text)) ? undefined : original(prefix, text, ...args))
}

// -- what the operator sees ----------------------------------------------------------------------
const NETWORK = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|socket hang up|timeout|网络错误/i
// The puppet retries on its own, up to several times a second: each error is said once, then
// summed up at most every 10 minutes while it recurs.
const seen = new Map() // error text -> {count, at}
puppet.on('error', ({ data }) => {
  const last = seen.get(data)
  if (last) {
    last.count += 1
    if (Date.now() - last.at < 10 * 60 * 1000) return
    say(`still failing (${last.count} times since ${new Date(last.at).toISOString().slice(0, 19)}Z): ${data}`)
    seen.set(data, { count: 0, at: Date.now() })
    return
  }
  if (seen.size >= 100) seen.clear()
  seen.set(data, { count: 0, at: Date.now() })
  mock?.event('puppet_error', { text: data })
  if (!puppet.isLoggedIn && NETWORK.test(data)) {
    say(`cannot reach WeChat's servers (${data}): is this machine online, with DNS? ` +
      `${puppetName} keeps retrying; not logged in`)
  } else {
    say(`puppet error: ${data}`)
  }
})

puppet.on('scan', ({ qrcode, status }) => {
  mock?.event('scan', { qrcode, status })
  if ((status === STATUS.Waiting || status === STATUS.Timeout) && qrcode) {
    say('log in: scan this QR code with WeChat on the phone of the bot\'s account, then confirm on the phone:')
    qrcodeTerminal.generate(qrcode, { small: true }, (qr) => process.stdout.write(qr + '\n'))
    say(`QR code URL (if the code above does not scan, render this text as a QR code): ${qrcode}`)
  } else if (status === STATUS.Scanned) {
    say('QR code scanned: confirm the login on the phone')
  } else if (status === STATUS.Confirmed) {
    say('login confirmed on the phone')
  } else if (status === STATUS.Cancel) {
    say('login cancelled on the phone; a new QR code follows')
  } else if (status === STATUS.Timeout) {
    say('the QR code expired; a new one follows')
  }
})

puppet.on('login', async ({ contactId }) => {
  seen.clear()
  mock?.event('login', { contactId })
  let name = ''
  try { name = (await puppet.contactPayload(contactId)).name || '' } catch (_) {}
  say(`logged in as ${name ? `${name} (${contactId})` : contactId}; the session is kept in ${SESSION_FILE}`)
})
puppet.on('logout', ({ contactId, data }) => {
  if (stopping) return // puppet.stop() on the way out: not a logout of the account
  mock?.event('logout', { contactId })
  say(`logged out (${oneLine(data || 'no reason given')}): the bot cannot send or receive until the ` +
    'account logs in again; watch for a new QR code')
})
puppet.on('ready', () => say('ready (contacts loaded)'))

// -- the server ----------------------------------------------------------------------------------
// What a client's Start/Stop RPCs do to the puppet (see the header): Start makes sure it runs,
// Stop does nothing (the RPC itself still closes a previous client's event stream).
let starting = null
function ensureStarted () {
  if (puppet.state.active() === true || starting) return starting
  starting = (async () => {
    let delay = 5
    while (!stopping) {
      try {
        await puppet.start()
        return
      } catch (e) {
        say(`${puppetName} did not start: ${oneLine(e?.message ?? e)}; retrying in ${delay} s`)
        await new Promise(resolve => setTimeout(resolve, delay * 1000))
        delay = Math.min(delay * 2, 300)
      }
    }
  })().finally(() => { starting = null })
  return starting
}
const served = new Proxy(puppet, {
  get (target, prop) {
    if (prop === 'start') return async () => { ensureStarted() }
    if (prop === 'stop') return async () => {}
    const value = Reflect.get(target, prop, target)
    return typeof value === 'function' ? value.bind(target) : value
  },
})
const server = new PuppetServer({
  endpoint: ENDPOINT,
  puppet: served,
  token: TOKEN,
  tls: { disable: true }, // python-wechaty (grpclib) speaks plaintext h2c only
})

async function shutdown (code, why) {
  if (stopping) return
  stopping = true
  setTimeout(() => process.exit(code), 5000).unref()
  say(`stopping (${why})`)
  try { await server.stop() } catch (_) {}
  if (puppetName === 'wechaty-puppet-wechat4u' && puppet.isLoggedIn && puppet.wechat4u?.botData) {
    // wechat4u saves its session at login only; its cookies and sync keys move on: save them now.
    try { await puppet.memory.set('PUPPET-WECHAT4U', puppet.wechat4u.botData) } catch (_) {}
  }
  try { await card.save() } catch (_) {}
  if (spec.stopOnExit) {
    try { await Promise.race([puppet.stop(), new Promise(resolve => setTimeout(resolve, 3000))]) } catch (_) {}
  }
  process.exit(code)
}
process.on('SIGTERM', () => shutdown(0, 'SIGTERM'))
process.on('SIGINT', () => shutdown(0, 'SIGINT'))

// Quiet start: the server warns "TLS disabled: INSECURE!" (said below, in words) and grpc-js that
// "Calling start() is no longer necessary".
PUPPET.log.level() === 'warn' && PUPPET.log.level('error')
process.noDeprecation = true
grpc.setLogVerbosity(grpc.logVerbosity.NONE) // a failed bind: said below, once
try {
  await server.start()
} catch (e) {
  const why = /EADDRINUSE/.test(e?.message) ? 'the address is in use (another gateway on this port?)' : oneLine(e?.message ?? e)
  fail(1, `cannot listen on ${ENDPOINT}: ${why}`)
} finally {
  PUPPET.log.level(process.env.WECHATY_LOG || 'warn')
  grpc.setLogVerbosity(grpc.logVerbosity.ERROR)
}
const saved = (await puppet.memory.size) > 0
say(`${puppetName} served on ${ENDPOINT} (plaintext gRPC${LOOPBACK ? ', loopback' : ': NOT loopback, keep this port off the internet'}); ` +
  `session ${saved ? 'found' : 'will be kept'} in ${SESSION_FILE}`)
mock?.listening()

// A client's event stream adds one listener per puppet event while it is open.
const baseListeners = puppet.listenerCount('message')
let streamOpen = false
setInterval(() => {
  const open = puppet.listenerCount('message') > baseListeners
  if (open === streamOpen) return
  streamOpen = open
  mock?.event(open ? 'client_stream_open' : 'client_stream_closed')
  say(open
    ? `a bot connected${puppet.isLoggedIn ? '' : ' (not logged in yet: it waits for the login)'}`
    : 'the bot disconnected')
}, 100).unref()

await ensureStarted()
if (mock) await mock.started()

// -- mock puppet (tests only) ---------------------------------------------------------------------
// stdout: JSON events, one per line, {"event": NAME, "t": seconds since start, ...}, among the log lines:
//   listening {endpoint, botId, roomId, users: {alice: id, bob: id, carol: id, dave: id}}
//   login {contactId}   logout {contactId}   scan {qrcode, status}   puppet_error {text}
//   client_stream_open / client_stream_closed
//   sent {id, kind, from, room}          a fake user's message was emitted (id = message id)
//   bot_said {id, to, room, type, text, mentions, file: {name, size} | null}
//   friendship_accepted {friendshipId, contactId}
//   error {message}                      a command failed
// stdin: one JSON command per line, {"cmd": NAME, ...}
//   {"cmd":"dm", "text":"..", "from":"alice"}                  fake user -> bot (DM); users:
//        alice, bob, carol, dave (default alice); all but dave are members of the room
//   {"cmd":"room", "text":"..", "mention":true, "from":"bob"}  fake user -> room, @bot if mention
//   {"cmd":"media", "path":"/abs/file.mp4", "name":"x.mp4", "room":false, "from":"alice"}
//        a file message; the mock types it by extension: .jpg/.png image, .mp4 video, .pdf/.txt file
//   {"cmd":"redeliver", "id":"<message id>"}                   emit the same message event again
//   {"cmd":"friend", "hello":"..", "name":"Carol"}             a stranger's friend request
//   {"cmd":"scan", "qrcode":"..", "status":2}                  a scan event (2 waiting, 3 scanned, ...)
//   {"cmd":"confirm"}                                          the phone confirms: log in
//   {"cmd":"logout"}                                           the account is logged out (session dropped)
//   {"cmd":"error", "message":".."}                            the puppet reports an error
//   {"cmd":"quit"}                                             stop and exit 0 (also on SIGTERM, stdin EOF)
// WECHATY_GATEWAY_MOCK_LOGIN: "auto" (default) logs in at start; "scan" emits a scan event and
// waits for {"cmd":"confirm"}. Either way a session saved in the memory card logs in at start
// without a scan, as a real puppet's would. Ids are fixed: a restarted gateway is the same account.
// Workarounds for the stock PuppetMock: _messageSend() returned no message id (python say() then
// fails with "no id"); outgoing mentionIdList was dropped; messageImage() returned a QR code
// instead of the image; 'ready' is never emitted; friendships carry no payload.
async function makeMock () {
  const { PuppetMock, mock: mockNs } = await import('wechaty-puppet-mock')
  const { FileBox } = await import('file-box')
  const T0 = Date.now()
  const event = (name, extra = {}) =>
    process.stdout.write(JSON.stringify({ event: name, t: (Date.now() - T0) / 1000, ...extra }) + '\n')
  const SESSION_SLOT = 'MOCK-SESSION'
  const loginMode = process.env.WECHATY_GATEWAY_MOCK_LOGIN || 'auto'

  class GatewayMock extends PuppetMock {
    friendships = new Map()

    async messageImage (messageId, _imageType) {
      return this.messageFile(messageId)
    }

    // Returns the new message's id and keeps the bot's outgoing @mentions.
    async _messageSend (conversationId, something, mentionIdList = []) {
      if (!this.isLoggedIn) throw new Error('not logged in')
      const M = this.mocker
      const user = M.ContactMock.load(this.currentUserId)
      const conversation = /@/.test(conversationId) ? M.RoomMock.load(conversationId) : M.ContactMock.load(conversationId)
      const mentions = (mentionIdList || []).map(id => M.ContactMock.load(id))
      return sayAs(user, something, conversation, mentions)
    }

    async messageSendText (conversationId, text, mentionIdList) {
      return this._messageSend(conversationId, text, mentionIdList)
    }

    async friendshipRawPayload (id) {
      const p = this.friendships.get(id)
      if (!p) throw new Error('no such friendship ' + id)
      return p
    }

    async friendshipAccept (friendshipId) {
      const p = await this.friendshipRawPayload(friendshipId)
      p.type = PUPPET.types.Friendship.Confirm
      event('friendship_accepted', { friendshipId, contactId: p.contactId })
    }
  }

  // ContactMock.say().to() creates the message and emits it synchronously; grab its id.
  function sayAs (contact, something, conversation, mentions = []) {
    let id
    const grab = (msg) => { if (!id && msg.payload.talkerId === contact.id) id = msg.id }
    contact.on('message', grab)
    try {
      contact.say(something, mentions).to(conversation)
    } finally {
      contact.off('message', grab)
    }
    return id
  }

  const mocker = new mockNs.Mocker()
  const mp = new GatewayMock({ mocker })
  const bot = mocker.createContact({ id: 'wxid_dayubot', name: 'DayuBot' })
  const users = {
    alice: mocker.createContact({ id: 'wxid_alice', name: 'Alice' }),
    bob: mocker.createContact({ id: 'wxid_bob', name: 'Bob' }),
    carol: mocker.createContact({ id: 'wxid_carol', name: 'Carol' }),
    dave: mocker.createContact({ id: 'wxid_dave', name: 'Dave' }),
  }
  // room ids must contain '@' (PuppetMock routes sends by /@/)
  const room = mocker.createRoom({
    id: 'e2e-room@chatroom',
    topic: 'E2E Room',
    memberIdList: [bot.id, users.alice.id, users.bob.id, users.carol.id],
  })

  // Everything the bot says: the mocker emits 'message' on the talker's ContactMock.
  bot.on('message', (msg) => {
    const p = msg.payload
    if (p.talkerId !== bot.id) return
    let file = null
    const fb = mocker.cacheFileBoxPayload.get(p.id)
    if (fb) file = { name: fb.name, size: fb.base64 ? Buffer.from(fb.base64, 'base64').length : fb.size }
    event('bot_said', {
      id: p.id, to: p.roomId || p.listenerId, room: !!p.roomId, type: p.type,
      text: p.text ?? null, mentions: p.mentionIdList || [], file,
    })
  })

  // Like a real puppet: log in, keep the session in the memory card, emit ready.
  async function login () {
    if (mp.isLoggedIn) return
    mocker.login(bot)
    await mp.memory.set(SESSION_SLOT, { userId: bot.id, since: new Date().toISOString() })
    await mp.memory.save()
    setTimeout(() => mp.emit('ready', { data: 'ready' }), 100)
  }
  const scan = (status = STATUS.Waiting, qrcode = `https://login.weixin.qq.com/l/mock-${Date.now().toString(36)}`) =>
    mocker.scan(qrcode, status)

  function user (name) {
    const u = users[name || 'alice']
    if (!u) throw new Error('unknown user ' + name)
    return u
  }

  let strangers = 0
  async function doCmd (c) {
    switch (c.cmd) {
      case 'dm': {
        const id = sayAs(user(c.from), c.text, bot)
        return event('sent', { id, kind: 'text', from: user(c.from).id, room: false })
      }
      case 'room': {
        const id = sayAs(user(c.from), c.text, room, c.mention ? [bot] : [])
        return event('sent', { id, kind: 'text', from: user(c.from).id, room: true })
      }
      case 'media': {
        const data = fs.readFileSync(c.path)
        // must be toJSON()-able for the mock's cache: Base64, not Buffer/File
        const fb = FileBox.fromBase64(data.toString('base64'), c.name || path.basename(c.path))
        const id = sayAs(user(c.from), fb, c.room ? room : bot)
        return event('sent', { id, kind: 'media', from: user(c.from).id, room: !!c.room, bytes: data.length })
      }
      case 'redeliver':
        mp.emit('message', { messageId: c.id })
        return event('sent', { id: c.id, kind: 'redeliver' })
      case 'friend': {
        strangers += 1
        const stranger = mocker.createContact({ id: `wxid_stranger${strangers}`, name: c.name || `Stranger${strangers}` })
        const friendshipId = `friendship-${strangers}`
        mp.friendships.set(friendshipId, {
          id: friendshipId, contactId: stranger.id, hello: c.hello || '',
          type: PUPPET.types.Friendship.Receive, timestamp: Math.floor(Date.now() / 1000),
        })
        mp.emit('friendship', { friendshipId })
        return event('sent', { id: friendshipId, kind: 'friendship', from: stranger.id })
      }
      case 'scan':
        scan(c.status ?? STATUS.Waiting, c.qrcode)
        return event('sent', { kind: 'scan' })
      case 'confirm':
        scan(STATUS.Confirmed, '')
        await login()
        return event('sent', { kind: 'confirm' })
      case 'logout':
        await mp.memory.delete(SESSION_SLOT)
        await mp.memory.save()
        await mp.logout('logged out on the phone')
        scan()
        return event('sent', { kind: 'logout' })
      case 'error':
        mp.emit('error', new Error(c.message || 'mock error'))
        return event('sent', { kind: 'error' })
      case 'quit':
        return shutdown(0, 'quit')
      default:
        return event('error', { message: 'unknown cmd ' + JSON.stringify(c) })
    }
  }

  return {
    puppet: mp,
    event,
    listening () {
      event('listening', {
        endpoint: ENDPOINT, botId: bot.id, roomId: room.id, sessionFile: SESSION_FILE,
        users: Object.fromEntries(Object.entries(users).map(([k, u]) => [k, u.id])),
      })
      readline.createInterface({ input: process.stdin }).on('line', (line) => {
        if (!line.trim()) return
        let c
        try { c = JSON.parse(line) } catch (e) { return event('error', { message: String(e) }) }
        doCmd(c).catch(e => event('error', { message: String(e) }))
      }).on('close', () => shutdown(0, 'stdin closed'))
    },
    async started () { // after the puppet started
      const saved = await mp.memory.get(SESSION_SLOT)
      if (saved?.userId === bot.id) {
        say('mock: session restored from the memory card, no scan needed')
        await login()
      } else if (loginMode === 'scan') {
        scan()
      } else {
        await login()
      }
    },
  }
}
