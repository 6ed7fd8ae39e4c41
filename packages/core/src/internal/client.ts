import { Cause, Clock, Deferred, Duration, Effect, Exit, Fiber, Latch, PubSub, Queue, Schedule, Scope, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import type * as MqttClient from "../MqttClient.ts"
import {
  ClientClosed,
  ConnectionLost,
  ConnectionRefused,
  ConnectTimeout,
  type ConnectionError,
  InvalidOptions,
  InvalidTopic,
  MessageDropped,
  MessageExpired,
  type MqttError,
  ProtocolError,
  PublishRejected,
  AuthenticationFailed,
  PacketTooLarge,
  QueueFull,
  ServerDisconnect,
  SessionLost,
  SubscribeRejected
} from "../MqttError.ts"
import type { MqttEvent, ServerProperties } from "../MqttEvent.ts"
import type { MqttMessage, PublishMessage } from "../MqttMessage.ts"
import * as MqttOptions from "../MqttOptions.ts"
import { topicFilterProblem } from "../Topic.ts"
import { type ConnackPacket, encode, makeDecoder, type Packet, type PublishPacket } from "./codec.ts"
import { connectPacket, preparePublish, toBuffer } from "./packets.ts"
import { toConnectionError } from "./socketErrors.ts"
import { makeRequester } from "./requestResponse.ts"
import { OutgoingAliases } from "./topicAliases.ts"
import {
  type ControlRequest,
  type Output,
  Protocol,
  type PublishRequest,
  readConnack,
  type SubscribeResult
} from "./protocol.ts"
import { type AckTicket, makeSubscription, pump, Router, subscribePacket } from "./router.ts"

/** Most packets written in one batch, so incoming acks get their turn. */
const MAX_BATCH = 4096

/** MQTT 5 DISCONNECT codes after which reconnecting would not help (or would fight another client). */
const FINAL_DISCONNECT_CODES = new Set([0x87, 0x8c, 0x8e])
/** MQTT 5 codes that come with a Server Reference to try instead. */
const REDIRECT_CODES = new Set([0x9c, 0x9d])

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

/** Default size of a subscription's buffer. */
const DEFAULT_BUFFER_SIZE = 1024

/** A connection that stayed up this long resets the reconnection back-off. */
const STABLE_CONNECTION_MILLIS = 1_000

const succeedVoid = Effect.void

export const make = (
  input: MqttOptions.MqttClientOptions = {}
): Effect.Effect<MqttClient.Service, InvalidOptions, Scope.Scope | Socket.Socket> =>
  Effect.flatMap(Socket.Socket, (socket) => makeWithSockets(input, [socket]))

/** A client that rotates through `sockets` (one per broker address) on each connection attempt. */
export const makeWithSockets = Effect.fnUntraced(function*(
  input: MqttOptions.MqttClientOptions,
  sockets: readonly [Socket.Socket, ...Array<Socket.Socket>],
  transport?: MqttClient.TransportOptions
): Effect.fn.Return<MqttClient.Service, InvalidOptions, Scope.Scope> {
  const options = yield* MqttOptions.resolve(input)
  const scope = yield* Effect.scope
  const clock = yield* Clock.Clock
  const version = options.protocolVersion
  const expiryMillis = options.messageExpiry === undefined ? undefined : Duration.toMillis(options.messageExpiry)

  const publishQueue = yield* Queue.make<PublishRequest>({ capacity: options.capacity, strategy: options.strategy })
  const controlQueue = yield* Queue.unbounded<ControlRequest>()
  const events = yield* PubSub.sliding<MqttEvent>(4096)
  const protocol = new Protocol(version, options.maxInflight)
  const router = new Router()
  /** Opened whenever the writer may have something to write. */
  const wake = Latch.makeUnsafe(false)
  /** Encoded packets the loop itself must send first: acks, pings, resends, resubscribes. */
  let outbox: Array<Uint8Array> = []
  /** The oldest queued publish, without taking it (it must stay queued while the window is full). */
  const peekPublish = (): PublishRequest | undefined => {
    const head = publishQueue.messages.head
    return head === undefined ? undefined : head.array[head.offset]
  }

  const counters = {
    sent: 0,
    received: 0,
    droppedNewest: 0,
    droppedOldest: 0,
    droppedOffline: 0,
    expired: 0,
    connections: 0
  }
  let connected = false
  /** No new work is accepted and the writer takes nothing more from the queues. */
  let closed = false
  /** Opened on every acknowledgement and written batch, for `disconnect({ drain })`. */
  const progress = Latch.makeUnsafe(false)
  let stoppedWith: MqttError | undefined
  let currentWriter: Socket.Writer | undefined
  /** The broker's CONNACK properties on the current (or last) connection. */
  let server: ServerProperties = {}
  /** The client identifier in use (the broker assigns one when ours is empty). */
  let clientId = options.clientId
  const aliases = new OutgoingAliases()
  let nextSubscriptionId = 1
  /** A socket to the broker a Server Reference named, for the next attempt. */
  let redirectTo: Socket.Socket | undefined
  /** Waits for the broker's verdict on a re-authentication. */
  let reauthentication: Deferred.Deferred<void, MqttError> | undefined
  /** AUTH challenges received after CONNACK, answered by the connection's auth fiber. */
  let authInbox: Queue.Queue<{ readonly code: number; readonly data: Uint8Array | undefined }> | undefined
  /** MQTT 5: the DISCONNECT reason to send when we close the connection because the broker broke the protocol. */
  let closeWith: number | undefined

  const emit = (event: MqttEvent) => {
    PubSub.publishUnsafe(events, event)
  }

  // ---------------------------------------------------------------------------
  // The caller's side: validate, encode, enqueue.
  // ---------------------------------------------------------------------------

  const prepare = (message: PublishMessage) =>
    preparePublish(message, version, expiryMillis, expiryMillis === undefined ? 0 : clock.currentTimeMillisUnsafe())

  const receiptOf = (request: PublishRequest): MqttClient.PublishReceipt => ({
    topic: request.topic,
    qos: request.qos,
    acknowledged: Deferred.await(request.receipt)
  })

  const drop = (request: PublishRequest, reason: "dropping" | "sliding" | "offline") => {
    if (reason === "dropping") counters.droppedNewest++
    else if (reason === "sliding") counters.droppedOldest++
    else counters.droppedOffline++
    Deferred.doneUnsafe(request.receipt, Effect.fail(new MessageDropped({ topic: request.topic, reason })))
    emit({ _tag: "MessageDropped", topic: request.topic, reason })
  }

  /** A QoS 0 message while offline, with `queueQoS0WhileOffline: false`: dropped at once. */
  const dropsOffline = (request: PublishRequest) =>
    request.qos === 0 && !connected && !options.queueQoS0WhileOffline

  const closedError = () =>
    stoppedWith === undefined || stoppedWith._tag === "ClientClosed"
      ? new ClientClosed()
      : new ClientClosed({ reason: stoppedWith.message })

  /** Enqueues without waiting. Returns false when the queue is full (strategies suspend/dropping). */
  const offerNow = (request: PublishRequest): boolean => {
    if (options.strategy === "sliding" && Queue.isFullUnsafe(publishQueue)) {
      const evicted = Queue.takeUnsafe(publishQueue)
      if (evicted !== undefined && Exit.isSuccess(evicted)) drop(evicted.value, "sliding")
    }
    if (!Queue.offerUnsafe(publishQueue, request)) return false
    wake.openUnsafe()
    return true
  }

  type PublishError = InvalidTopic | InvalidOptions | ClientClosed

  /**
   * Validates and queues one message. `whenFull` is what a full queue does:
   * `"strategy"` applies the strategy (`publish`), `"fail"` fails with
   * `QueueFull` (`tryPublish`; sliding never gets there: it makes room).
   */
  const enqueue = (
    message: PublishMessage,
    whenFull: "strategy" | "fail"
  ): Effect.Effect<MqttClient.PublishReceipt, PublishError | QueueFull> => {
    const request = prepare(message)
    if (!("receipt" in request)) return Effect.fail(request)
    if (closed) return Effect.fail(closedError())
    if (dropsOffline(request)) {
      drop(request, "offline")
      return Effect.succeed(receiptOf(request))
    }
    if (offerNow(request)) return Effect.succeed(receiptOf(request))
    if (whenFull === "fail") return Effect.fail(new QueueFull({ capacity: options.capacity }))
    if (options.strategy === "dropping") {
      drop(request, "dropping")
      return Effect.succeed(receiptOf(request))
    }
    // "suspend": wait for room. Interrupting the offer leaves nothing queued.
    return Effect.flatMap(Queue.offer(publishQueue, request), (offered) => {
      if (!offered) return Effect.fail(closedError())
      wake.openUnsafe()
      return Effect.succeed(receiptOf(request))
    })
  }

  // Lazy: the work happens when the effect runs, and again each time it runs.
  const publish = (message: PublishMessage) =>
    Effect.suspend(() => enqueue(message, "strategy")) as Effect.Effect<MqttClient.PublishReceipt, PublishError>

  const tryPublish = (message: PublishMessage) => Effect.suspend(() => enqueue(message, "fail"))

  const publishAndWait = (message: PublishMessage): Effect.Effect<void, MqttError> =>
    Effect.flatMap(publish(message), (receipt) => receipt.acknowledged)

  const enqueueControl = (request: ControlRequest) => {
    Queue.offerUnsafe(controlQueue, request)
    wake.openUnsafe()
  }

  const subscribeScoped = (
    filter: string | ReadonlyArray<string>,
    subscribeOptions?: MqttClient.SubscribeOptions
  ): Effect.Effect<Stream.Stream<MqttMessage, MqttError>, MqttError, Scope.Scope> =>
    Effect.gen(function*() {
      const filters = typeof filter === "string" ? [filter] : [...filter]
      if (filters.length === 0) return yield* new InvalidOptions({ reason: "subscribe needs at least one topic filter" })
      for (const f of filters) {
        const problem = typeof f === "string" ? topicFilterProblem(f) : "a topic filter must be a string"
        if (problem !== undefined) return yield* new InvalidTopic({ topic: String(f), reason: problem })
      }
      const qos = subscribeOptions?.qos ?? 0
      if (qos !== 0 && qos !== 1 && qos !== 2) {
        return yield* new InvalidOptions({ reason: `qos must be 0, 1 or 2, got ${String(qos)}` })
      }
      const bufferSize = subscribeOptions?.bufferSize ?? DEFAULT_BUFFER_SIZE
      if (!Number.isInteger(bufferSize) || bufferSize < 1) {
        return yield* new InvalidOptions({ reason: `bufferSize must be a whole number >= 1, got ${String(bufferSize)}` })
      }
      const strategy = subscribeOptions?.strategy ?? "suspend"
      if (strategy !== "suspend" && strategy !== "dropping" && strategy !== "sliding") {
        return yield* new InvalidOptions({ reason: `strategy must be "suspend", "dropping" or "sliding", got ${String(strategy)}` })
      }
      if (closed) return yield* closedError()
      const subscription = yield* makeSubscription({
        filters,
        qos,
        strategy,
        bufferSize,
        noLocal: subscribeOptions?.noLocal,
        retainAsPublished: subscribeOptions?.retainAsPublished,
        retainHandling: subscribeOptions?.retainHandling,
        id: version === 5 ? nextSubscriptionId++ : undefined
      })
      yield* Effect.forkScoped(pump(subscription, settle))
      // Routed from now on, so nothing sent right after the SUBACK (retained messages) is missed.
      router.add(subscription)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          router.remove(subscription)
          const unused = filters.filter((f) => !router.uses(f))
          if (unused.length > 0 && !closed) {
            enqueueControl({
              _tag: "Unsubscribe",
              packet: { cmd: "unsubscribe", unsubscriptions: unused },
              done: Deferred.makeUnsafe()
            })
          }
        })
      )
      const done = Deferred.makeUnsafe<SubscribeResult, MqttError>()
      enqueueControl({ _tag: "Subscribe", packet: subscribePacket(subscription), done, subscription })
      const { granted, reason } = yield* Deferred.await(done)
      for (let i = 0; i < filters.length; i++) {
        const code = granted[i] ?? 0x80
        if (code >= 0x80) {
          return yield* new SubscribeRejected({ filter: filters[i], code, ...(reason !== undefined ? { reason } : {}) })
        }
      }
      subscription.confirmed = true
      return Stream.fromQueue(subscription.messages)
    })

  const subscribe = (
    filter: string | ReadonlyArray<string>,
    subscribeOptions?: MqttClient.SubscribeOptions
  ): Stream.Stream<MqttMessage, MqttError> => Stream.unwrap(subscribeScoped(filter, subscribeOptions))

  /** One subscription buffer took the message; once all have, the acknowledgement goes out (on the same connection only). */
  const settle = (ticket: AckTicket) => {
    if (--ticket.remaining > 0 || ticket.connection !== counters.connections || !connected) return
    sendAck(ticket.ack)
  }

  const sendAck = (ack: Packet) => {
    outbox.push(encode(ack, version))
    if (ack.cmd === "puback") protocol.acknowledged(ack.messageId!)
    wake.openUnsafe()
  }

  const stats: Effect.Effect<MqttClient.MqttStats> = Effect.sync(() => ({
    connected,
    queueSize: Queue.sizeUnsafe(publishQueue),
    capacity: options.capacity,
    strategy: options.strategy,
    inflight: protocol.inflightCount,
    dropped: counters.droppedNewest + counters.droppedOldest + counters.droppedOffline,
    droppedNewest: counters.droppedNewest,
    droppedOldest: counters.droppedOldest,
    droppedOffline: counters.droppedOffline,
    expired: counters.expired,
    droppedIncoming: router.dropped,
    clientId,
    server,
    sent: counters.sent,
    received: counters.received,
    connections: counters.connections
  }))

  // ---------------------------------------------------------------------------
  // The event loop: one connection at a time, reconnecting on a schedule.
  // ---------------------------------------------------------------------------

  /** Settles what the state machine decided. Returns a fatal connection error, if any. */
  const perform = (outputs: Array<Output>): ConnectionError | undefined => {
    let fatal: ConnectionError | undefined
    for (let i = 0; i < outputs.length; i++) {
      const output = outputs[i]
      switch (output._tag) {
        case "Send":
          outbox.push(encode(output.packet, version))
          wake.openUnsafe()
          break
        case "Acknowledged":
          Deferred.doneUnsafe(output.request.receipt, succeedVoid)
          wake.openUnsafe()
          progress.openUnsafe()
          break
        case "Rejected":
          Deferred.doneUnsafe(
            output.request.receipt,
            Effect.fail(
              new PublishRejected({
                topic: output.request.topic,
                code: output.code,
                ...(output.reason !== undefined ? { reason: output.reason } : {})
              })
            )
          )
          wake.openUnsafe()
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
            const ticket: AckTicket = { remaining: 1, ack: output.ack, connection: counters.connections }
            router.deliver(output.packet, ticket)
            settle(ticket)
          }
          break
        case "Subscribed":
          Deferred.doneUnsafe(output.request.done, Effect.succeed({ granted: output.granted, reason: output.reason }))
          wake.openUnsafe()
          break
        case "Unsubscribed":
          Deferred.doneUnsafe(output.request.done, succeedVoid)
          wake.openUnsafe()
          break
        case "Pong":
          break
        case "Auth":
          if (output.code === 0x18 && authInbox !== undefined) {
            Queue.offerUnsafe(authInbox, { code: output.code, data: output.data })
          } else if (output.code === 0x00 && reauthentication !== undefined) {
            Deferred.doneUnsafe(reauthentication, succeedVoid)
          } else {
            fatal ??= new ProtocolError({ reason: `unexpected AUTH with reason code 0x${output.code.toString(16)}` })
            closeWith ??= 0x82
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
          closeWith ??= output.code
          break
      }
    }
    outputs.length = 0
    return fatal
  }

  /** Collects the next batch to write: loop packets first, then control requests, then publishes. */
  const collectBatch = (batch: Array<Uint8Array>, writtenQos0: Array<PublishRequest>) => {
    if (closed) return
    if (outbox.length > 0) {
      for (const bytes of outbox) batch.push(bytes)
      outbox = []
    }
    while (protocol.hasFreeId) {
      const next = Queue.takeUnsafe(controlQueue)
      if (next === undefined || !Exit.isSuccess(next)) break
      batch.push(encode(protocol.sendControl(withSubscriptionId(next.value)), version))
    }
    const now = expiryMillis === undefined ? 0 : clock.currentTimeMillisUnsafe()
    while (batch.length < MAX_BATCH) {
      const request = peekPublish()
      if (request === undefined) break
      if (expiryMillis !== undefined && now - request.enqueuedAt > expiryMillis) {
        Queue.takeUnsafe(publishQueue)
        expire(request)
        continue
      }
      const refusal = refuseBeforeSending(request)
      if (refusal !== undefined) {
        Queue.takeUnsafe(publishQueue)
        Deferred.doneUnsafe(request.receipt, Effect.fail(refusal))
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
    const maximum = server.maximumPacketSize
    if (maximum !== undefined && request.bytes.length > maximum) {
      return new PacketTooLarge({ topic: request.topic, size: request.bytes.length, maximum })
    }
    if (server.maximumQoS !== undefined && request.qos > server.maximumQoS) {
      return new PublishRejected({ topic: request.topic, code: 0x9b, reason: `the broker's Maximum QoS is ${server.maximumQoS}` })
    }
    if (server.retainAvailable === false && request.packet.retain) {
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
      topic: known ? "" : request.topic,
      properties: { ...request.packet.properties, topicAlias: alias }
    }
    if (request.qos > 0) packet.messageId = request.messageId
    return encode(packet, version)
  }

  /** A SUBSCRIBE carries its subscription's identifier when the broker supports them (MQTT 5). */
  const withSubscriptionId = (request: ControlRequest): ControlRequest => {
    if (request._tag !== "Subscribe" || request.subscription?.id === undefined) return request
    const supported = server.subscriptionIdentifiersAvailable !== false
    request.subscription.idSent = supported
    if (supported) request.packet.properties = { ...request.packet.properties, subscriptionIdentifier: request.subscription.id }
    else delete request.packet.properties
    return request
  }

  const redirect = (serverReference: string) => {
    const socket = transport?.redirect?.(serverReference)
    if (socket !== undefined) redirectTo = socket
  }

  const expire = (request: PublishRequest) => {
    counters.expired++
    Deferred.doneUnsafe(request.receipt, Effect.fail(new MessageExpired({ topic: request.topic, expiryMillis: expiryMillis! })))
    emit({ _tag: "MessageExpired", topic: request.topic })
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
      const outputs: Array<Output> = []
      let fatal: ConnectionError | undefined
      let connack: ConnackPacket | undefined
      const early: Array<Packet> = []
      const challenges: Array<Packet> = []
      closeWith = undefined
      const decoder = makeDecoder(
        version,
        (packet) => {
          if (connack === undefined) {
            if (packet.cmd === "connack") connack = packet
            else if (packet.cmd === "auth" && options.authenticate !== undefined) challenges.push(packet)
            else fatal ??= new ProtocolError({ reason: `expected CONNACK, got ${packet.cmd.toUpperCase()}` })
          } else if (!connected) {
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
      server = result.properties
      if (server.assignedClientIdentifier !== undefined) clientId = server.assignedClientIdentifier
      aliases.reset(options.topicAliases ? server.topicAliasMaximum ?? 0 : 0)

      // Established: resend what the session needs before anything new.
      if (!result.sessionPresent && options.onSessionLost === "fail") {
        for (const request of protocol.abandonPublishes()) {
          Deferred.doneUnsafe(request.receipt, Effect.fail(new SessionLost({ topic: request.topic })))
        }
        progress.openUnsafe()
      }
      const resend: Array<Packet | Uint8Array> = []
      protocol.resume(result.sessionPresent, server.receiveMaximum, resend, {
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
      outbox = first
      connected = true
      currentWriter = writer
      counters.connections++
      onEstablished()
      emit({
        _tag: "Connected",
        sessionPresent: result.sessionPresent,
        connection: counters.connections,
        clientId,
        properties: server
      })
      for (const packet of early) protocol.receive(packet, outputs)
      fatal ??= perform(outputs)
      if (fatal !== undefined) return yield* Effect.fail(fatal)
      wake.openUnsafe()

      let lastWrite = clock.currentTimeMillisUnsafe()
      let lastRead = lastWrite

      const reader = Effect.gen(function*() {
        while (true) {
          const chunks = yield* Effect.mapError(pull, toConnectionError)
          lastRead = clock.currentTimeMillisUnsafe()
          for (let i = 0; i < chunks.length; i++) decoder.push(chunks[i])
          if (fatal !== undefined) return yield* Effect.fail(fatal)
        }
      })

      const batch: Array<Uint8Array> = []
      const writtenQos0: Array<PublishRequest> = []
      const writeLoop = Effect.gen(function*() {
        while (true) {
          yield* wake.await
          wake.closeUnsafe()
          collectBatch(batch, writtenQos0)
          if (batch.length === 0) continue
          yield* Effect.mapError(writer.writeAll(batch as [Uint8Array, ...Array<Uint8Array>]), toConnectionError)
          lastWrite = clock.currentTimeMillisUnsafe()
          for (let i = 0; i < writtenQos0.length; i++) Deferred.doneUnsafe(writtenQos0[i].receipt, succeedVoid)
          batch.length = 0
          writtenQos0.length = 0
          progress.openUnsafe()
          // Let the reader and publishers run between batches.
          yield* Effect.yieldNow
        }
      })

      // MQTT 5: the broker may impose its own keep-alive (Server Keep Alive).
      const keepAliveMillis = (server.serverKeepAlive ?? options.keepAlive) * 1000
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
            outbox.push(encode({ cmd: "pingreq" }, version))
            wake.openUnsafe()
          }
          const wait = pingSentAt !== undefined
            ? pingSentAt + keepAliveMillis / 2 - now
            : Math.min(lastWrite, lastRead) + keepAliveMillis - now
          yield* Effect.sleep(Duration.millis(Math.max(1, wait)))
        }
      })

      // Re-authentication: the broker's challenges after CONNACK, answered in order.
      const inbox = yield* Queue.unbounded<{ readonly code: number; readonly data: Uint8Array | undefined }>()
      authInbox = inbox
      const authLoop = Effect.gen(function*() {
        while (true) {
          const challenge = yield* Queue.take(inbox)
          const answer = yield* answerChallenge(challenge.data)
          outbox.push(encode(answer, version))
          wake.openUnsafe()
        }
      })

      // The loops never succeed: the first failure ends the connection and interrupts the others.
      yield* Effect.all(
        [reader, writeLoop, ...(keepAliveMillis > 0 ? [keepAlive] : []), ...(options.authenticate ? [authLoop] : [])],
        { concurrency: "unbounded", discard: true }
      ).pipe(
        Effect.onError(() =>
          // MQTT 5: tell the broker why we close (a violation on its side), best effort.
          version === 5 && closeWith !== undefined
            ? writer.write(encode({ cmd: "disconnect", reasonCode: closeWith }, version)).pipe(
              Effect.timeout("1 second"),
              Effect.ignore
            )
            : Effect.void
        )
      )
    }).pipe(
      Effect.ensuring(Effect.sync(() => {
        connected = false
        currentWriter = undefined
        authInbox = undefined
        if (reauthentication !== undefined) {
          Deferred.doneUnsafe(reauthentication, Effect.fail(new ConnectionLost({ reason: "the connection ended during re-authentication" })))
          reauthentication = undefined
        }
      })),
      Effect.scoped
    )

  const failPending = (error: MqttError) => {
    const failure = Effect.fail(error)
    const { publishes, control } = protocol.drain()
    for (const request of publishes) Deferred.doneUnsafe(request.receipt, failure)
    for (const request of control) failControl(request, failure)
    for (;;) {
      const next = Queue.takeUnsafe(publishQueue)
      if (next === undefined || !Exit.isSuccess(next)) break
      Deferred.doneUnsafe(next.value.receipt, failure)
    }
    for (;;) {
      const next = Queue.takeUnsafe(controlQueue)
      if (next === undefined || !Exit.isSuccess(next)) break
      failControl(next.value, failure)
    }
  }

  /** Stops the client for good: nothing more is accepted, everything pending fails with `error`. */
  const stop = (error: MqttError) => {
    if (stoppedWith !== undefined) return
    closed = true
    stoppedWith = error
    failPending(error)
    Queue.shutdownUnsafe(publishQueue)
    Queue.shutdownUnsafe(controlQueue)
    router.endAll(error)
    progress.openUnsafe()
  }

  const eventLoop = Effect.gen(function*() {
    const schedule = options.reconnect === false ? Schedule.recurs(0) : options.reconnect
    let step = yield* Schedule.toStep(schedule)
    let attempt = 0
    let dial = 0
    while (!closed) {
      let establishedAt: number | undefined
      const socket = redirectTo ?? sockets[dial++ % sockets.length]
      redirectTo = undefined
      const exit = yield* Effect.exit(runConnection(socket, () => {
        establishedAt = clock.currentTimeMillisUnsafe()
      }))
      if (closed) return
      const error = connectionErrorOf(exit)
      if (error === undefined) {
        // A defect: a bug in the loop. Report it loudly and carry on with a fresh connection.
        yield* Effect.logError("effect-mqtt: the event loop hit a defect and restarts", exit)
      }
      const cause = error ?? new ConnectionLost({ reason: "the event loop hit a defect" })
      emit({ _tag: "Disconnected", cause })
      const now = clock.currentTimeMillisUnsafe()
      if (establishedAt !== undefined && now - establishedAt >= STABLE_CONNECTION_MILLIS) {
        step = yield* Schedule.toStep(schedule)
        attempt = 0
      }
      if (
        (cause._tag === "ConnectionRefused" && !options.retryRefused(cause) && redirectTo === undefined) ||
        (cause._tag === "ServerDisconnect" && FINAL_DISCONNECT_CODES.has(cause.code))
      ) {
        yield* Effect.logWarning(`effect-mqtt: ${cause.message}; not retrying`)
        return stop(cause)
      }
      attempt++
      const next = yield* Effect.exit(step(now, cause))
      if (Exit.isFailure(next)) return stop(cause)
      const delay = next.value[1]
      emit({ _tag: "Reconnecting", attempt, delayMillis: Duration.toMillis(delay) })
      yield* Effect.sleep(delay)
    }
  })

  // Supervision: a defect outside a connection (a bug) is logged and the loop starts again.
  const supervised: Effect.Effect<void> = eventLoop.pipe(
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.failCause(cause)
        : Effect.logError("effect-mqtt: the event loop failed and restarts", cause).pipe(
          Effect.andThen(Effect.suspend(() => closed ? Effect.void : supervised))
        )
    )
  )
  const loop = yield* Effect.forkIn(supervised, scope)

  const isIdle = () =>
    Queue.sizeUnsafe(publishQueue) === 0 && protocol.inflightCount === 0 && outbox.length === 0

  const awaitIdle = Effect.gen(function*() {
    while (!isIdle() && stoppedWith === undefined) {
      progress.closeUnsafe()
      yield* progress.await
    }
  })

  let shutDown = false
  /** Sends DISCONNECT when connected, fails what is pending with `ClientClosed`, ends the loop. */
  const shutdown = (disconnectOptions?: MqttClient.DisconnectOptions) => Effect.gen(function*() {
    if (shutDown) return
    shutDown = true
    const writer = connected && stoppedWith === undefined ? currentWriter : undefined
    closed = true // the writer takes nothing more: DISCONNECT is the last packet
    if (writer !== undefined) {
      const packet: Packet = version === 5
        ? {
          cmd: "disconnect",
          reasonCode: disconnectOptions?.reasonCode ?? 0,
          ...(disconnectOptions?.sessionExpiryInterval !== undefined
            ? { properties: { sessionExpiryInterval: disconnectOptions.sessionExpiryInterval } }
            : {})
        }
        : { cmd: "disconnect" }
      yield* writer.write(encode(packet, version)).pipe(Effect.timeout("1 second"), Effect.ignore)
    }
    stop(new ClientClosed())
    emit({ _tag: "Disconnected", cause: new ClientClosed() })
    yield* Fiber.interrupt(loop)
    yield* PubSub.shutdown(events)
  }).pipe(Effect.uninterruptible)

  const disconnect = (disconnectOptions?: MqttClient.DisconnectOptions): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (disconnectOptions?.drain === true && !closed) {
        yield* Effect.timeoutOption(awaitIdle, disconnectOptions.timeout ?? "30 seconds")
      }
      yield* shutdown(disconnectOptions)
    })

  yield* Scope.addFinalizer(scope, shutdown())

  const reauthenticate: Effect.Effect<void, MqttError> = Effect.suspend(() => {
    const authenticate = options.authenticate
    if (version !== 5 || authenticate === undefined) {
      return Effect.fail(new InvalidOptions({ reason: "reauthenticate needs protocolVersion 5 and the authenticate option" }))
    }
    if (!connected) return Effect.fail(new ConnectionLost({ reason: "not connected" }))
    const verdict = Deferred.makeUnsafe<void, MqttError>()
    reauthentication = verdict
    outbox.push(encode({
      cmd: "auth",
      reasonCode: 0x19,
      properties: {
        authenticationMethod: authenticate.method,
        ...(authenticate.data !== undefined ? { authenticationData: toBuffer(authenticate.data) } : {})
      }
    }, version))
    wake.openUnsafe()
    return Deferred.await(verdict).pipe(
      Effect.ensuring(Effect.sync(() => {
        if (reauthentication === verdict) reauthentication = undefined
      }))
    )
  })

  const { request, reply } = makeRequester({
    version,
    scope,
    clientId: () => clientId,
    responseInformation: () => server.responseInformation,
    publish,
    subscribeScoped
  })

  return {
    clientId: options.clientId,
    publish,
    tryPublish,
    publishAndWait,
    subscribe,
    subscribeScoped,
    events: Stream.fromPubSub(events),
    stats,
    disconnect,
    request,
    reply,
    reauthenticate
  } satisfies MqttClient.Service
})

const failControl = (request: ControlRequest, failure: Effect.Effect<never, MqttError>) => {
  if (request._tag === "Subscribe") Deferred.doneUnsafe(request.done, failure)
  else Deferred.doneUnsafe(request.done, failure)
}

const connectionErrorOf = (exit: Exit.Exit<unknown, ConnectionError>): ConnectionError | undefined => {
  if (Exit.isSuccess(exit)) return new ConnectionLost({ reason: "the connection ended" })
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  return failure?.error
}


