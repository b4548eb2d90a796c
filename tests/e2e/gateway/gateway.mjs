// Wechaty puppet-service gateway around wechaty-puppet-mock, for the bot's end-to-end tests.
//
//   GW_PORT=8788 GW_TOKEN=secret node gateway.mjs
//
// env: GW_PORT (required), GW_TOKEN (required), GW_MAX_MSG_MB (gRPC receive limit, default 64),
//      WECHATY_LOG (default "warn"; logs go to stderr)
//
// stdout: one JSON event per line, {"event": NAME, "t": seconds since start, ...}
//   listening {endpoint, botId, roomId, users: {alice: id, bob: id, carol: id, dave: id}}
//   login {contactId}        client_stream_open / client_stream_closed
//   sent {id, kind, from, room}          a fake user's message was emitted (id = message id)
//   bot_said {id, to, room, type, text, mentions, file: {name, size} | null}
//   friendship_accepted {friendshipId, contactId}
//   error {message}
// stdin: one JSON command per line, {"cmd": NAME, ...}
//   {"cmd":"dm", "text":"..", "from":"alice"}                  fake user -> bot (DM); users:
//        alice, bob, carol, dave (default alice); all but dave are members of the room
//   {"cmd":"room", "text":"..", "mention":true, "from":"bob"}  fake user -> room, @bot if mention
//   {"cmd":"media", "path":"/abs/file.mp4", "name":"x.mp4", "room":false, "from":"alice"}
//        a file message; the mock types it by extension: .jpg/.png image, .mp4 video, .pdf/.txt file
//   {"cmd":"redeliver", "id":"<message id>"}                   emit the same message event again
//   {"cmd":"friend", "hello":"..", "name":"Carol"}             a stranger's friend request
//   {"cmd":"quit"}                                             stop and exit 0 (also on SIGTERM)
// Ids are fixed so that a gateway restarted on the same port looks like the same account.
//
// Workarounds for the stock PuppetMock (see docs/wechat.md):
//  - _messageSend() returned no message id: python say() then fails with "no id";
//  - outgoing mentionIdList was dropped;
//  - messageImage() returned a QR code instead of the image;
//  - 'ready' is never emitted; friendships carry no payload.
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { PuppetServer } from 'wechaty-puppet-service'
import { PuppetMock, mock } from 'wechaty-puppet-mock'
import * as PUPPET from 'wechaty-puppet'
import { FileBox } from 'file-box'
// PuppetServer builds its grpc.Server from this (unexported) object; grpc-js's default 4 MiB
// receive limit would cap bot -> gateway files near 3 MB (they travel as base64 JSON).
import { GRPC_OPTIONS } from './node_modules/wechaty-puppet-service/dist/esm/src/config.js'

const PORT = Number(process.env.GW_PORT)
const TOKEN = process.env.GW_TOKEN
if (!PORT || !TOKEN) {
  process.stderr.write('GW_PORT and GW_TOKEN are required\n')
  process.exit(2)
}
GRPC_OPTIONS['grpc.max_receive_message_length'] = Number(process.env.GW_MAX_MSG_MB || 64) * 1024 * 1024
PUPPET.log.level(process.env.WECHATY_LOG || 'warn')

const T0 = Date.now()
const out = (event, extra = {}) =>
  process.stdout.write(JSON.stringify({ event, t: (Date.now() - T0) / 1000, ...extra }) + '\n')

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
    out('friendship_accepted', { friendshipId, contactId: p.contactId })
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

const mocker = new mock.Mocker()
const puppet = new GatewayMock({ mocker })

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

// Runs on every puppet start (python calls stop() then start() on connect; stop() logs out).
mocker.use(function loginEnv (m) {
  if (!puppet.isLoggedIn) m.login(bot)
  setTimeout(() => puppet.emit('ready', { data: 'ready' }), 100)
  return () => {}
})

// Everything the bot says: the mocker emits 'message' on the talker's ContactMock.
bot.on('message', (msg) => {
  const p = msg.payload
  if (p.talkerId !== bot.id) return
  let file = null
  const fb = mocker.cacheFileBoxPayload.get(p.id)
  if (fb) file = { name: fb.name, size: fb.base64 ? Buffer.from(fb.base64, 'base64').length : fb.size }
  out('bot_said', {
    id: p.id, to: p.roomId || p.listenerId, room: !!p.roomId, type: p.type,
    text: p.text ?? null, mentions: p.mentionIdList || [], file,
  })
})
puppet.on('login', ({ contactId }) => out('login', { contactId }))
puppet.on('logout', ({ contactId }) => out('logout', { contactId }))

function user (name) {
  const u = users[name || 'alice']
  if (!u) throw new Error('unknown user ' + name)
  return u
}

let strangers = 0
function doCmd (c) {
  switch (c.cmd) {
    case 'dm': {
      const id = sayAs(user(c.from), c.text, bot)
      return out('sent', { id, kind: 'text', from: user(c.from).id, room: false })
    }
    case 'room': {
      const id = sayAs(user(c.from), c.text, room, c.mention ? [bot] : [])
      return out('sent', { id, kind: 'text', from: user(c.from).id, room: true })
    }
    case 'media': {
      const data = fs.readFileSync(c.path)
      // must be toJSON()-able for the mock's cache: Base64, not Buffer/File
      const fb = FileBox.fromBase64(data.toString('base64'), c.name || path.basename(c.path))
      const id = sayAs(user(c.from), fb, c.room ? room : bot)
      return out('sent', { id, kind: 'media', from: user(c.from).id, room: !!c.room, bytes: data.length })
    }
    case 'redeliver':
      puppet.emit('message', { messageId: c.id })
      return out('sent', { id: c.id, kind: 'redeliver' })
    case 'friend': {
      strangers += 1
      const stranger = mocker.createContact({ id: `wxid_stranger${strangers}`, name: c.name || `Stranger${strangers}` })
      const friendshipId = `friendship-${strangers}`
      puppet.friendships.set(friendshipId, {
        id: friendshipId, contactId: stranger.id, hello: c.hello || '',
        type: PUPPET.types.Friendship.Receive, timestamp: Math.floor(Date.now() / 1000),
      })
      puppet.emit('friendship', { friendshipId })
      return out('sent', { id: friendshipId, kind: 'friendship', from: stranger.id })
    }
    case 'quit':
      return shutdown(0)
    default:
      return out('error', { message: 'unknown cmd ' + JSON.stringify(c) })
  }
}

const server = new PuppetServer({
  endpoint: `127.0.0.1:${PORT}`,
  puppet,
  token: TOKEN,
  tls: { disable: true }, // python-wechaty (grpclib) speaks plaintext h2c only
})

let stopping = false
async function shutdown (code) {
  if (stopping) return
  stopping = true
  try { await server.stop() } catch (e) {}
  try { if (puppet.isLoggedIn) await puppet.stop() } catch (e) {}
  process.exit(code)
}
process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))

await server.start()
out('listening', {
  endpoint: `127.0.0.1:${PORT}`, botId: bot.id, roomId: room.id,
  users: Object.fromEntries(Object.entries(users).map(([k, u]) => [k, u.id])),
})

// The server's EventStreamManager adds puppet listeners while a client's Event() stream is open.
const baseListeners = puppet.listenerCount('message')
let streamOpen = false
setInterval(() => {
  const open = puppet.listenerCount('message') > baseListeners
  if (open !== streamOpen) {
    streamOpen = open
    out(open ? 'client_stream_open' : 'client_stream_closed')
  }
}, 50)

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return
  try { doCmd(JSON.parse(line)) } catch (e) { out('error', { message: String(e) }) }
}).on('close', () => shutdown(0))
