/**
 * One connection at a time: dial, CONNECT/CONNACK (with enhanced
 * authentication), resend what the session needs, then read, write in batches
 * and keep alive until something fails. The state machine decides; this
 * module performs its decisions.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Result from "effect/Result"
import * as Socket from "effect/socket/Socket"
import type * as MqttClient from "../MqttClient.ts"
import {
  AuthenticationFailed,
  ClientClosed,
  type ConnectionError,
  ConnectionLost,
  ConnectionRefused,
  ConnectTimeout,
  MessageExpired,
  type MqttError,
  PacketTooLarge,
  ProtocolError,
  PublishRejected,
  ServerDisconnect,
  SessionLost
} from "../MqttError.ts"
import { type ConnackPacket, encode, makeDecoder, type Packet, type PublishPacket } from "./codec.ts"
import { connectPacket, payloadOf, toBuffer } from "./packets.ts"
import { type ControlRequest, Outputs, type PublishRequest, readConnack } from "./protocol.ts"
import { AckTicket, subscribePacket } from "./router.ts"
import { toConnectionError } from "./socketErrors.ts"
import { type ClientState, emit, peekPublish } from "./state.ts"

/** Most packets written in one batch, so incoming acks get their turn. */
export const MAX_BATCH = 4096
/** MQTT 5 codes that come with a Server Reference to try instead. */
export const REDIRECT_CODES = new Set([0x9c, 0x9d])

const succeedVoid = Effect.void

const utf8 = new TextDecoder("utf-8", { fatal: true })
const isUtf8 = (bytes: Uint8Array | string) => {
  if (typeof bytes === "string") return true
  try {
    utf8.decode(bytes)
    return true
  } catch {
    return false
  }
}

export const makeConnection = (state: ClientState, transport: MqttClient.TransportOptions | undefined) => {
  const { options, version, clock, protocol, router, wake, progress, publishQueue, controlQueue, counters, aliases } = state
  const expiryMillis = state.expiryMillis

  /** One subscription buffer took the message; once all have, the acknowledgement goes out (on the same connection only). */
  const settle = (ticket: AckTicket) => {
    if (--ticket.remaining > 0 || ticket.connection !== counters.connections || !state.connected) return
    sendAck(ticket.ack)
  }

  const sendAck = (ack: Packet) => {
    state.outbox.push(encode(ack, version))
    if (ack.cmd === "puback") protocol.acknowledged(ack.messageId!)
    wake.request()
  }


  // ---------------------------------------------------------------------------
  // The event loop: one connection at a time, reconnecting on a schedule.
  // ---------------------------------------------------------------------------

  wake.hasWork = () =>
    state.outbox.length > 0 || Queue.sizeUnsafe(publishQueue) > 0 || Queue.sizeUnsafe(controlQueue) > 0

  /** Receipts settled by the current read whose waiters are resumed once the whole read is decoded. */
  const toNotify: Array<PublishRequest> = []
  let notifying = false
  const notifySettled = () => {
    // A waiter resumed here may settle more receipts: the loop below picks them up.
    if (notifying || toNotify.length === 0) return
    notifying = true
    for (let i = 0; i < toNotify.length; i++) toNotify[i].notify()
    toNotify.length = 0
    notifying = false
  }

  /** Settles what the state machine decided. Returns a fatal connection error, if any. */
  const perform = (outputs: Outputs): ConnectionError | undefined => {
    let fatal: ConnectionError | undefined
    for (let i = 0; i < outputs.length; i++) {
      const output = outputs.at(i)
      switch (output._tag) {
        case "Send":
          state.outbox.push(encode(output.packet, version))
          wake.request()
          break
        case "Acknowledged":
          if (output.request.succeedQuietly()) toNotify.push(output.request)
          wake.request()
          progress.openUnsafe()
          break
        case "Rejected":
          if (
            output.request.failQuietly(
              new PublishRejected({
                topic: output.request.topic,
                code: output.code,
                ...(output.reason !== undefined ? { reason: output.reason } : {})
              })
            )
          ) toNotify.push(output.request)
          wake.request()
          progress.openUnsafe()
          break
        case "Deliver":
          counters.received++
          if (version === 5 && output.packet.properties?.payloadFormatIndicator === true && !isUtf8(output.packet.payload)) {
            // MQTT 5 §4.3.3: a payload flagged as UTF-8 that is not is refused, not delivered.
            router.dropped++
            if (output.ack !== undefined) sendAck({ ...output.ack, reasonCode: 0x99 } as Packet)
          } else if (output.ack === undefined) {
            router.deliver(output.packet, undefined)
          } else {
            const ticket = new AckTicket(output.ack, counters.connections)
            router.deliver(output.packet, ticket)
            settle(ticket)
          }
          break
        case "Subscribed":
          Deferred.doneUnsafe(output.request.done, Effect.succeed({ granted: output.granted, reason: output.reason }))
          wake.request()
          break
        case "Unsubscribed":
          Deferred.doneUnsafe(output.request.done, Effect.succeed(output.codes))
          wake.request()
          break
        case "Pong":
          break
        case "Auth":
          if (output.code === 0x18 && state.authInbox !== undefined) {
            Queue.offerUnsafe(state.authInbox, { code: output.code, data: output.data })
          } else if (output.code === 0x00 && state.reauthentication !== undefined) {
            Deferred.doneUnsafe(state.reauthentication, succeedVoid)
          } else {
            fatal ??= new ProtocolError({ reason: `unexpected AUTH with reason code 0x${output.code.toString(16)}` })
            state.closeWith ??= 0x82
          }
          break
        case "ServerDisconnect":
          if (output.serverReference !== undefined && REDIRECT_CODES.has(output.code)) redirect(output.serverReference)
          fatal ??= new ServerDisconnect({
            code: output.code,
            ...(output.reason !== undefined ? { reason: output.reason } : {}),
            ...(output.serverReference !== undefined ? { serverReference: output.serverReference } : {})
          })
          break
        case "ProtocolViolation":
          fatal ??= new ProtocolError({ reason: output.reason })
          state.closeWith ??= output.code
          break
      }
    }
    outputs.clear()
    return fatal
  }

  /** Collects the next batch to write: loop packets first, then control requests, then publishes. */
  const collectBatch = (batch: Array<Uint8Array>, writtenQos0: Array<PublishRequest>) => {
    if (state.closed) return
    if (state.outbox.length > 0) {
      for (const bytes of state.outbox) batch.push(bytes)
      state.outbox = []
    }
    while (protocol.hasFreeId) {
      const next = Queue.takeUnsafe(controlQueue)
      if (next === undefined || !Exit.isSuccess(next)) break
      batch.push(encode(protocol.sendControl(withSubscriptionId(next.value)), version))
    }
    const now = expiryMillis === undefined ? 0 : clock.currentTimeMillisUnsafe()
    while (batch.length < MAX_BATCH) {
      const request = peekPublish(state)
      if (request === undefined) break
      if (expiryMillis !== undefined && now - request.enqueuedAt > expiryMillis) {
        Queue.takeUnsafe(publishQueue)
        expire(request)
        continue
      }
      const refusal = refuseBeforeSending(request)
      if (refusal !== undefined) {
        Queue.takeUnsafe(publishQueue)
        request.fail(refusal)
        continue
      }
      if (request.qos > 0 && (!protocol.hasWindow || !protocol.hasFreeId)) break
      Queue.takeUnsafe(publishQueue)
      const bytes = protocol.sendPublish(request)
      batch.push(aliases.enabled ? withTopicAlias(request) : bytes)
      counters.sent++
      if (request.qos === 0) writtenQos0.push(request)
    }
  }

  /** What the broker said it does not accept (MQTT 5 CONNACK): refused here, not sent. */
  const refuseBeforeSending = (request: PublishRequest): MqttError | undefined => {
    const maximum = state.server.maximumPacketSize
    if (maximum !== undefined && request.bytes.length > maximum) {
      return new PacketTooLarge({ topic: request.topic, size: request.bytes.length, maximum })
    }
    if (state.server.maximumQoS !== undefined && request.qos > state.server.maximumQoS) {
      return new PublishRejected({ topic: request.topic, code: 0x9b, reason: `the broker's Maximum QoS is ${state.server.maximumQoS}` })
    }
    if (state.server.retainAvailable === false && request.packet.retain) {
      return new PublishRejected({ topic: request.topic, code: 0x9a, reason: "the broker does not support retained messages" })
    }
    return undefined
  }

  /**
   * The first transmission of a publish with a topic alias. `request.bytes`
   * keeps the full topic: resends after a reconnect (where aliases reset) use it.
   */
  const withTopicAlias = (request: PublishRequest): Uint8Array => {
    const { alias, known } = aliases.choose(request.topic)
    const packet: PublishPacket = {
      ...request.packet,
      payload: payloadOf(request),
      topic: known ? "" : request.topic,
      properties: { ...request.packet.properties, topicAlias: alias }
    }
    if (request.qos > 0) packet.messageId = request.messageId
    return encode(packet, version)
  }

  /** A SUBSCRIBE carries its subscription's identifier when the broker supports them (MQTT 5). */
  const withSubscriptionId = (request: ControlRequest): ControlRequest => {
    if (request._tag !== "Subscribe" || request.subscription?.id === undefined) return request
    const supported = state.server.subscriptionIdentifiersAvailable !== false
    request.subscription.idSent = supported
    if (supported) request.packet.properties = { ...request.packet.properties, subscriptionIdentifier: request.subscription.id }
    else delete request.packet.properties
    return request
  }

  const redirect = (serverReference: string) => {
    if (transport?.redirect !== undefined) state.redirectTo = serverReference
  }

  const expire = (request: PublishRequest) => {
    counters.expired++
    request.fail(new MessageExpired({ topic: request.topic, expiryMillis: expiryMillis! }))
    emit(state, { _tag: "MessageExpired", topic: request.topic })
  }

  /** The AUTH packet answering a broker challenge, from the application's `authenticate.respond`. */
  const answerChallenge = (data: Uint8Array | undefined): Effect.Effect<Packet, AuthenticationFailed> => {
    const authenticate = options.authenticate
    if (authenticate === undefined) return Effect.fail(new AuthenticationFailed({ reason: "no authenticate option" }))
    return authenticate.respond(data).pipe(
      Effect.mapError((cause) =>
        new AuthenticationFailed({ reason: `the authenticate handler failed: ${cause instanceof Error ? cause.message : String(cause)}` })
      ),
      Effect.map((answer): Packet => ({
        cmd: "auth",
        reasonCode: 0x18,
        properties: {
          authenticationMethod: authenticate.method,
          ...(answer !== undefined ? { authenticationData: toBuffer(answer) } : {})
        }
      }))
    )
  }

  /** One connection: dial, CONNECT/CONNACK, then read, write and keep alive until something fails. */
  const runConnection = (socket: Socket.Socket, onEstablished: () => void) =>
    Effect.gen(function*() {
      const outputs = new Outputs()
      let fatal: ConnectionError | undefined
      let connack: ConnackPacket | undefined
      const early: Array<Packet> = []
      const challenges: Array<Packet> = []
      state.closeWith = undefined
      const decoder = makeDecoder(
        version,
        (packet) => {
          if (connack === undefined) {
            if (packet.cmd === "connack") connack = packet
            else if (packet.cmd === "auth" && options.authenticate !== undefined) challenges.push(packet)
            else fatal ??= new ProtocolError({ reason: `expected CONNACK, got ${packet.cmd.toUpperCase()}` })
          } else if (!state.connected) {
            early.push(packet)
          } else {
            protocol.receive(packet, outputs)
            fatal ??= perform(outputs)
          }
        },
        (reason) => {
          fatal ??= new ProtocolError({ reason: `malformed packet from the broker: ${reason}` })
        }
      )

      const handshake = Effect.gen(function*() {
        const pull = yield* Effect.mapError(Socket.readerBytes(socket), toConnectionError)
        const writer = yield* socket.writer
        yield* Effect.mapError(writer.write(encode(connectPacket(options), version)), toConnectionError)
        while (connack === undefined) {
          const chunks = yield* Effect.mapError(pull, toConnectionError)
          for (const chunk of chunks) decoder.push(chunk)
          if (fatal !== undefined) return yield* Effect.fail(fatal)
          // Enhanced authentication: answer each AUTH challenge until the CONNACK comes.
          while (challenges.length > 0 && connack === undefined) {
            const challenge = challenges.shift()!
            if (challenge.cmd !== "auth" || challenge.reasonCode !== 0x18) {
              return yield* new ProtocolError({ reason: "unexpected AUTH during the handshake" })
            }
            const answer = yield* answerChallenge(challenge.properties?.authenticationData)
            yield* Effect.mapError(writer.write(encode(answer, version)), toConnectionError)
          }
        }
        return { pull, writer }
      }).pipe(
        Effect.timeoutOrElse({
          duration: options.connectTimeout,
          orElse: () => Effect.fail(new ConnectTimeout({ timeoutMillis: Duration.toMillis(options.connectTimeout) }))
        })
      )
      const { pull, writer } = yield* handshake
      const result = readConnack(connack!, version)
      if (result._tag === "Refused") {
        if (result.serverReference !== undefined && REDIRECT_CODES.has(result.code)) redirect(result.serverReference)
        return yield* new ConnectionRefused({ code: result.code, reason: result.reason })
      }
      state.server = result.properties
      if (state.server.assignedClientIdentifier !== undefined) state.clientId = state.server.assignedClientIdentifier
      aliases.reset(options.topicAliases ? state.server.topicAliasMaximum ?? 0 : 0)

      // Established: resend what the session needs before anything new.
      if (!result.sessionPresent && options.onSessionLost === "fail") {
        for (const request of protocol.abandonPublishes()) {
          request.fail(new SessionLost({ topic: request.topic }))
        }
        progress.openUnsafe()
      }
      const resend: Array<Packet | Uint8Array> = []
      protocol.resume(result.sessionPresent, state.server.receiveMaximum, resend, {
        receiveMaximum: options.properties?.receiveMaximum ?? (version === 5 ? 65_535 : undefined),
        maximumPacketSize: options.properties?.maximumPacketSize,
        topicAliasMaximum: options.properties?.topicAliasMaximum ?? 0
      })
      const first: Array<Uint8Array> = []
      if (!result.sessionPresent) {
        for (const subscription of router.confirmed()) {
          const request: ControlRequest = {
            _tag: "Subscribe",
            packet: subscribePacket(subscription),
            done: Deferred.makeUnsafe(),
            subscription
          }
          first.push(encode(protocol.sendControl(withSubscriptionId(request)), version))
        }
      }
      for (const item of resend) first.push(item instanceof Uint8Array ? item : encode(item, version))
      // Acks and pings owed on the old connection are dropped: a kept session makes the broker resend.
      state.outbox = first
      state.connected = true
      state.currentWriter = writer
      counters.connections++
      onEstablished()
      emit(state, {
        _tag: "Connected",
        sessionPresent: result.sessionPresent,
        connection: counters.connections,
        clientId: state.clientId,
        properties: state.server
      })
      for (const packet of early) protocol.receive(packet, outputs)
      fatal ??= perform(outputs)
      notifySettled()
      if (fatal !== undefined) return yield* Effect.fail(fatal)
      wake.request()

      let lastWrite = clock.currentTimeMillisUnsafe()
      let lastRead = lastWrite

      // Per-connection arrays, reused for every write: fresh arrays per write would be objects that outlive a
      // young-generation GC whenever a write is slow, which V8 answers by allocating them, and then everything
      // they hold, in the old generation (allocation-site pretenuring).
      const batch: Array<Uint8Array> = []
      let writtenQos0: Array<PublishRequest> = []
      let writing = false
      /**
       * Writes whatever is ready now (acks we owe, control requests, publishes
       * the window allows) in one socket write. Both the reader (right after a
       * read freed the window or produced acks) and the write loop (after new
       * requests) call it: going through the write loop alone costs event-loop
       * turns per round trip, and each turn would carry only a few packets.
       */
      /** The QoS 0 publishes of the write in progress: written means done for them. */
      let writingQos0: Array<PublishRequest> = []
      const afterWrite = (exit: Exit.Exit<void, Socket.SocketError>): Effect.Effect<void, ConnectionError> => {
        writing = false
        // Whatever arrived during the write (and a flush skipped meanwhile) goes next.
        wake.request()
        // A failed write ends the connection; its QoS 0 publishes are failed when it ends (see below).
        if (Exit.isFailure(exit)) return Effect.mapError(exit, toConnectionError)
        const written = writingQos0
        lastWrite = clock.currentTimeMillisUnsafe()
        if (written.length > 0) {
          // All of them first, then the waiters (see `succeedQuietly`).
          for (let i = 0; i < written.length; i++) if (written[i].succeedQuietly()) toNotify.push(written[i])
          written.length = 0
          notifySettled()
        }
        progress.openUnsafe()
        return Effect.void
      }
      const flush = Effect.suspend(() => {
        if (writing) return Effect.void // the other caller is mid-write and flushes again after it
        collectBatch(batch, writtenQos0)
        if (batch.length === 0) return Effect.void
        writing = true
        // Small packets: one buffer, one write. Large ones: a writev, rather than copying them again.
        let bytes = 0
        for (let i = 0; i < batch.length; i++) bytes += batch[i].length
        const write = batch.length === 1
          ? writer.write(batch[0])
          : bytes <= 65_536
          ? writer.write(Buffer.concat(batch, bytes))
          : writer.writeAll(batch.slice() as [Uint8Array, ...Array<Uint8Array>])
        batch.length = 0
        if (writtenQos0.length > 0) {
          // Swap the two lists: the one just written is empty again (see afterWrite).
          const empty = writingQos0
          writingQos0 = writtenQos0
          writtenQos0 = empty
        }
        // One continuation per write (this runs for every batch).
        return Effect.flatMap(Effect.exit(write), afterWrite)
      })

      const readChunks = Effect.mapError(pull, toConnectionError)
      const reader = Effect.gen(function*() {
        while (true) {
          const chunks = yield* readChunks
          lastRead = clock.currentTimeMillisUnsafe()
          for (let i = 0; i < chunks.length; i++) decoder.push(chunks[i])
          notifySettled()
          if (fatal !== undefined) return yield* Effect.fail(fatal)
          yield* flush
        }
      })

      const writeLoop = Effect.gen(function*() {
        while (true) {
          yield* wake.latch.await
          wake.latch.closeUnsafe()
          yield* flush
        }
      })

      // MQTT 5: the broker may impose its own keep-alive (Server Keep Alive).
      const keepAliveMillis = (state.server.serverKeepAlive ?? options.keepAlive) * 1000
      const keepAlive = Effect.gen(function*() {
        let pingSentAt: number | undefined
        while (true) {
          const now = yield* Clock.currentTimeMillis
          if (pingSentAt !== undefined) {
            if (lastRead >= pingSentAt) pingSentAt = undefined
            else if (now - pingSentAt >= keepAliveMillis / 2) {
              return yield* new ConnectionLost({ reason: `no answer to PINGREQ within ${keepAliveMillis / 2} ms` })
            }
          }
          if (pingSentAt === undefined && (now - lastWrite >= keepAliveMillis || now - lastRead >= keepAliveMillis)) {
            pingSentAt = now
            state.outbox.push(encode({ cmd: "pingreq" }, version))
            wake.request()
          }
          const wait = pingSentAt !== undefined
            ? pingSentAt + keepAliveMillis / 2 - now
            : Math.min(lastWrite, lastRead) + keepAliveMillis - now
          yield* Effect.sleep(Duration.millis(Math.max(1, wait)))
        }
      })

      // Re-authentication: the broker's challenges after CONNACK, answered in order.
      const inbox = yield* Queue.unbounded<{ readonly code: number; readonly data: Uint8Array | undefined }>()
      state.authInbox = inbox
      const authLoop = Effect.gen(function*() {
        while (true) {
          const challenge = yield* Queue.take(inbox)
          const answer = yield* answerChallenge(challenge.data)
          state.outbox.push(encode(answer, version))
          wake.request()
        }
      })

      // The loops never succeed: the first failure ends the connection and interrupts the others.
      yield* Effect.all(
        [reader, writeLoop, ...(keepAliveMillis > 0 ? [keepAlive] : []), ...(options.authenticate ? [authLoop] : [])],
        { concurrency: "unbounded", discard: true }
      ).pipe(
        Effect.onError(() =>
          // MQTT 5: tell the broker why we close (a violation on its side), best effort.
          version === 5 && state.closeWith !== undefined
            ? writer.write(encode({ cmd: "disconnect", reasonCode: state.closeWith }, version)).pipe(
              Effect.timeout("1 second"),
              Effect.ignore
            )
            : Effect.void
        ),
        // The QoS 0 publishes of a write that failed, or that was still in progress when the connection ended
        // (the client closed while the socket was full, say): QoS 0 is sent once, they may or may not have got out,
        // and their receipts must not wait forever. They fail with what ended the connection.
        Effect.onExit((exit) =>
          Effect.sync(() => {
            if (writingQos0.length === 0 || Exit.isSuccess(exit)) return
            const found = Cause.findError(exit.cause)
            const error: MqttError = Result.isSuccess(found)
              ? found.success
              : Cause.hasInterruptsOnly(exit.cause)
              ? new ClientClosed()
              : new ConnectionLost({ reason: "the connection ended" })
            for (let i = 0; i < writingQos0.length; i++) if (writingQos0[i].failQuietly(error)) toNotify.push(writingQos0[i])
            writingQos0.length = 0
            notifySettled()
          })
        )
      )
    }).pipe(
      Effect.ensuring(Effect.sync(() => {
        state.connected = false
        state.currentWriter = undefined
        state.authInbox = undefined
        if (state.reauthentication !== undefined) {
          Deferred.doneUnsafe(state.reauthentication, Effect.fail(new ConnectionLost({ reason: "the connection ended during re-authentication" })))
          state.reauthentication = undefined
        }
      })),
      Effect.scoped
    )


  return { runConnection, settle }
}
