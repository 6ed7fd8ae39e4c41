/**
 * The client: its caller side (publish, subscribe, stats, disconnect) and the
 * supervised event loop that runs one connection after another.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Socket from "effect/socket/Socket"
import type * as MqttClient from "../MqttClient.ts"
import {
  ClientClosed,
  type ConnectionError,
  ConnectionLost,
  InvalidOptions,
  InvalidTopic,
  MessageDropped,
  type MqttError,
  QueueFull,
  SubscribeRejected
} from "../MqttError.ts"
import type { MqttMessage, PublishMessage } from "../MqttMessage.ts"
import * as MqttOptions from "../MqttOptions.ts"
import * as ReasonCode from "../ReasonCode.ts"
import { topicFilterProblem } from "../Topic.ts"
import { encode, type Packet } from "./codec.ts"
import { makeConnection, MAX_BATCH } from "./connection.ts"
import { preparePublish, toBuffer } from "./packets.ts"
import type { ControlRequest, SubscribeResult } from "./protocol.ts"
import { PublishEffect, type WhenFull } from "./publishEffect.ts"
import { PublishRequest } from "./publishRequest.ts"
import { makeRequester } from "./requestResponse.ts"
import { makeSubscription, pump, subscribePacket } from "./router.ts"
import { emit, makeState, peekPublish } from "./state.ts"

/** MQTT 5 DISCONNECT codes after which reconnecting would not help (or would fight another client). */
const FINAL_DISCONNECT_CODES = new Set([0x87, 0x8c, 0x8e])

/** Default size of a subscription's buffer. */
const DEFAULT_BUFFER_SIZE = 1024

/** A connection that stayed up this long resets the reconnection back-off. */
const STABLE_CONNECTION_MILLIS = 1_000



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
  const state = yield* makeState(options, clock)
  const { version, expiryMillis, publishQueue, controlQueue, events, protocol, router, wake, progress, counters } = state
  const { runConnection, settle } = makeConnection(state, transport)

  // ---------------------------------------------------------------------------
  // The caller's side: validate, encode, enqueue.
  // ---------------------------------------------------------------------------

  const prepare = (message: PublishMessage) =>
    preparePublish(message, version, expiryMillis, expiryMillis === undefined ? 0 : clock.currentTimeMillisUnsafe())

  const drop = (request: PublishRequest, reason: "dropping" | "sliding" | "offline") => {
    if (reason === "dropping") counters.droppedNewest++
    else if (reason === "sliding") counters.droppedOldest++
    else counters.droppedOffline++
    request.failLazily(() => new MessageDropped({ topic: request.topic, reason }))
    emit(state, { _tag: "MessageDropped", topic: request.topic, reason })
  }

  /** A QoS 0 message while offline, with `queueQoS0WhileOffline: false`: dropped at once. */
  const dropsOffline = (request: PublishRequest) =>
    request.qos === 0 && !state.connected && !options.queueQoS0WhileOffline

  const closedError = () =>
    state.stoppedWith === undefined || state.stoppedWith._tag === "ClientClosed"
      ? new ClientClosed()
      : new ClientClosed({ reason: state.stoppedWith.message })

  const flushAt = Math.max(1, Math.min(Math.ceil(options.capacity / 2), MAX_BATCH))

  /** Enqueues without waiting. Returns false when the queue is full (strategies suspend/dropping). */
  const offerNow = (request: PublishRequest): boolean => {
    // A sliding queue evicts its oldest message itself when offered one more: fail that one's receipt.
    const evicted = options.strategy === "sliding" && Queue.isFullUnsafe(publishQueue) ? peekPublish(state) : undefined
    if (!Queue.offerUnsafe(publishQueue, request)) return false
    if (evicted !== undefined) drop(evicted, "sliding")
    // Writes are batched per microtask; a burst that has filled half the queue is written at once instead, so a
    // synchronous loop of publishes (a paced publisher catching up after a GC pause, say) is not dropped by its own size.
    if (Queue.sizeUnsafe(publishQueue) >= flushAt) wake.now()
    else wake.request()
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
    whenFull: WhenFull
  ): Effect.Effect<MqttClient.PublishReceipt, PublishError | QueueFull> => {
    const request = prepare(message)
    if (!(request instanceof PublishRequest)) return Effect.fail(request)
    if (state.closed) return Effect.fail(closedError())
    if (dropsOffline(request)) {
      drop(request, "offline")
      return Effect.succeed(request)
    }
    if (offerNow(request)) return Effect.succeed(request)
    if (whenFull === "fail") return Effect.fail(new QueueFull({ capacity: options.capacity }))
    if (options.strategy === "dropping") {
      drop(request, "dropping")
      return Effect.succeed(request)
    }
    // "suspend": wait for room. Interrupting the offer leaves nothing queued.
    return Effect.flatMap(Queue.offer(publishQueue, request), (offered) => {
      if (!offered) return Effect.fail(closedError())
      wake.request()
      return Effect.succeed(request)
    })
  }

  // Lazy: the work happens when the effect runs, and again each time it runs (see PublishEffect).
  const publish = (message: PublishMessage): Effect.Effect<MqttClient.PublishReceipt, PublishError> =>
    new PublishEffect(enqueue, message, "strategy") as Effect.Effect<MqttClient.PublishReceipt, PublishError>

  const tryPublish = (message: PublishMessage): Effect.Effect<MqttClient.PublishReceipt, PublishError | QueueFull> =>
    new PublishEffect(enqueue, message, "fail")

  const publishAndWait = (message: PublishMessage): Effect.Effect<void, MqttError> =>
    Effect.flatMap(publish(message), (receipt) => receipt.acknowledged)

  const enqueueControl = (request: ControlRequest) => {
    Queue.offerUnsafe(controlQueue, request)
    wake.request()
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
      if (state.closed) return yield* closedError()
      const subscription = yield* makeSubscription({
        filters,
        qos,
        strategy,
        bufferSize,
        noLocal: subscribeOptions?.noLocal,
        retainAsPublished: subscribeOptions?.retainAsPublished,
        retainHandling: subscribeOptions?.retainHandling,
        id: version === 5 ? state.nextSubscriptionId++ : undefined
      })
      yield* Effect.forkScoped(pump(subscription, settle))
      // Routed from now on, so nothing sent right after the SUBACK (retained messages) is missed.
      router.add(subscription)
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          router.remove(subscription)
          const unused = filters.filter((f) => !router.uses(f))
          if (unused.length === 0 || state.closed) return Effect.void
          const done = Deferred.makeUnsafe<ReadonlyArray<number>, MqttError>()
          enqueueControl({ _tag: "Unsubscribe", packet: { cmd: "unsubscribe", unsubscriptions: unused }, done })
          // Unsubscribing is how a stream ends: no operation is left to fail, so a refusal is logged.
          return Effect.forkIn(reportUnsubscribe(unused, done), scope)
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

  const reportUnsubscribe = (filters: ReadonlyArray<string>, done: Deferred.Deferred<ReadonlyArray<number>, MqttError>) =>
    Deferred.await(done).pipe(
      Effect.flatMap((codes) => {
        const refused = codes.flatMap((code, i) => (code >= 0x80 ? [`"${filters[i]}": ${ReasonCode.describe(code)} (0x${code.toString(16)})`] : []))
        return refused.length === 0 ? Effect.void : Effect.logWarning(`effect-mqtt: the broker refused to unsubscribe ${refused.join(", ")}`)
      }),
      Effect.ignore
    )

  const subscribe = (
    filter: string | ReadonlyArray<string>,
    subscribeOptions?: MqttClient.SubscribeOptions
  ): Stream.Stream<MqttMessage, MqttError> => Stream.unwrap(subscribeScoped(filter, subscribeOptions))

  const stats: Effect.Effect<MqttClient.MqttStats> = Effect.sync(() => ({
    connected: state.connected,
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
    clientId: state.clientId,
    server: state.server,
    sent: counters.sent,
    received: counters.received,
    connections: counters.connections
  }))
  const failPending = (error: MqttError) => {
    const failure = Effect.fail(error)
    const { publishes, control } = protocol.drain()
    for (const request of publishes) request.fail(error)
    for (const request of control) failControl(request, failure)
    for (;;) {
      const next = Queue.takeUnsafe(publishQueue)
      if (next === undefined || !Exit.isSuccess(next)) break
      next.value.fail(error)
    }
    for (;;) {
      const next = Queue.takeUnsafe(controlQueue)
      if (next === undefined || !Exit.isSuccess(next)) break
      failControl(next.value, failure)
    }
  }

  /** Stops the client for good: nothing more is accepted, everything pending fails with `error`. */
  const stop = (error: MqttError) => {
    if (state.stoppedWith !== undefined) return
    state.closed = true
    state.stoppedWith = error
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
    while (!state.closed) {
      let establishedAt: number | undefined
      const reference = state.redirectTo
      state.redirectTo = undefined
      const redirected = reference === undefined ? undefined : yield* transport!.redirect!(reference)
      const socket = redirected ?? sockets[dial++ % sockets.length]
      const exit = yield* Effect.exit(runConnection(socket, () => {
        establishedAt = clock.currentTimeMillisUnsafe()
      }))
      if (state.closed) return
      const error = connectionErrorOf(exit)
      if (error === undefined) {
        // A defect: a bug in the loop. Report it loudly and carry on with a fresh connection.
        yield* Effect.logError("effect-mqtt: the event loop hit a defect and restarts", exit)
      }
      const cause = error ?? new ConnectionLost({ reason: "the event loop hit a defect" })
      emit(state, { _tag: "Disconnected", cause })
      const now = clock.currentTimeMillisUnsafe()
      if (establishedAt !== undefined && now - establishedAt >= STABLE_CONNECTION_MILLIS) {
        step = yield* Schedule.toStep(schedule)
        attempt = 0
      }
      if (
        (cause._tag === "ConnectionRefused" && !options.retryRefused(cause) && state.redirectTo === undefined) ||
        (cause._tag === "ServerDisconnect" && FINAL_DISCONNECT_CODES.has(cause.code))
      ) {
        yield* Effect.logWarning(`effect-mqtt: ${cause.message}; not retrying`)
        return stop(cause)
      }
      attempt++
      const next = yield* Effect.exit(step(now, cause))
      if (Exit.isFailure(next)) return stop(cause)
      const delay = next.value[1]
      emit(state, { _tag: "Reconnecting", attempt, delayMillis: Duration.toMillis(delay) })
      yield* Effect.sleep(delay)
    }
  })

  // Supervision: a defect outside a connection (a bug) is logged and the loop starts again.
  const supervised: Effect.Effect<void> = eventLoop.pipe(
    Effect.catchCause((cause) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.failCause(cause)
        : Effect.logError("effect-mqtt: the event loop failed and restarts", cause).pipe(
          Effect.andThen(Effect.suspend(() => state.closed ? Effect.void : supervised))
        )
    )
  )
  const loop = yield* Effect.forkIn(supervised, scope)

  const isIdle = () =>
    Queue.sizeUnsafe(publishQueue) === 0 && protocol.inflightCount === 0 && state.outbox.length === 0

  const awaitIdle = Effect.gen(function*() {
    while (!isIdle() && state.stoppedWith === undefined) {
      progress.closeUnsafe()
      yield* progress.await
    }
  })

  let shutDown = false
  /** Sends DISCONNECT when connected, fails what is pending with `ClientClosed`, ends the loop. */
  const shutdown = (disconnectOptions?: MqttClient.DisconnectOptions) => Effect.gen(function*() {
    if (shutDown) return
    shutDown = true
    const writer = state.connected && state.stoppedWith === undefined ? state.currentWriter : undefined
    state.closed = true // the writer takes nothing more: DISCONNECT is the last packet
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
    emit(state, { _tag: "Disconnected", cause: new ClientClosed() })
    yield* Fiber.interrupt(loop)
    yield* PubSub.shutdown(events)
  }).pipe(Effect.uninterruptible)

  const disconnect = (disconnectOptions?: MqttClient.DisconnectOptions): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (disconnectOptions?.drain === true && !state.closed) {
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
    if (!state.connected) return Effect.fail(new ConnectionLost({ reason: "not state.connected" }))
    const verdict = Deferred.makeUnsafe<void, MqttError>()
    state.reauthentication = verdict
    state.outbox.push(encode({
      cmd: "auth",
      reasonCode: 0x19,
      properties: {
        authenticationMethod: authenticate.method,
        ...(authenticate.data !== undefined ? { authenticationData: toBuffer(authenticate.data) } : {})
      }
    }, version))
    wake.request()
    return Deferred.await(verdict).pipe(
      Effect.ensuring(Effect.sync(() => {
        if (state.reauthentication === verdict) state.reauthentication = undefined
      }))
    )
  })

  const { request, reply } = makeRequester({
    version,
    scope,
    clientId: () => state.clientId,
    responseInformation: () => state.server.responseInformation,
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


