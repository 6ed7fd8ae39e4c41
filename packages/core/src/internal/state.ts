/**
 * The state one client shares between its caller side (publish, subscribe,
 * stats) and its event loop (connections): queues, the protocol state
 * machine, the router, and the few mutable facts about the current connection.
 */
import type * as Clock from "effect/Clock"
import type * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Latch from "effect/Latch"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Socket from "effect/socket/Socket"
import type { MqttError } from "../MqttError.ts"
import type { MqttEvent, ServerProperties } from "../MqttEvent.ts"
import type { ResolvedOptions } from "../MqttOptions.ts"
import { type ControlRequest, Protocol, type PublishRequest } from "./protocol.ts"
import { Router } from "./router.ts"
import { OutgoingAliases } from "./topicAliases.ts"

export interface ClientState {
  readonly options: ResolvedOptions
  readonly version: 4 | 5
  readonly clock: Clock.Clock
  /** `messageExpiry` in milliseconds, when set. */
  readonly expiryMillis: number | undefined
  readonly publishQueue: Queue.Queue<PublishRequest>
  /** SUBSCRIBE/UNSUBSCRIBE: never dropped, never behind publishes. */
  readonly controlQueue: Queue.Queue<ControlRequest>
  readonly events: PubSub.PubSub<MqttEvent>
  readonly protocol: Protocol
  readonly router: Router
  /** Requested whenever the writer may have something to write. */
  readonly wake: Wake
  /** Opened on every acknowledgement and written batch, for `disconnect({ drain })`. */
  readonly progress: Latch.Latch
  readonly aliases: OutgoingAliases
  readonly counters: {
    sent: number
    received: number
    droppedNewest: number
    droppedOldest: number
    droppedOffline: number
    expired: number
    connections: number
  }
  /** Encoded packets the loop itself must send first: acks, pings, resends, resubscribes. */
  outbox: Array<Uint8Array>
  connected: boolean
  /** No new work is accepted and the writer takes nothing more from the queues. */
  closed: boolean
  stoppedWith: MqttError | undefined
  currentWriter: Socket.Writer | undefined
  /** The broker's CONNACK properties on the current (or last) connection. */
  server: ServerProperties
  /** The client identifier in use (the broker assigns one when ours is empty). */
  clientId: string
  nextSubscriptionId: number
  /** The Server Reference (another broker) to try on the next attempt. */
  redirectTo: string | undefined
  /** Waits for the broker's verdict on a re-authentication. */
  reauthentication: Deferred.Deferred<void, MqttError> | undefined
  /** AUTH challenges received after CONNACK, answered by the connection's auth fiber. */
  authInbox: Queue.Queue<{ readonly code: number; readonly data: Uint8Array | undefined }> | undefined
  /** MQTT 5: the DISCONNECT reason to send when we close the connection because the broker broke the protocol. */
  closeWith: number | undefined
}

export const makeState = (options: ResolvedOptions, clock: Clock.Clock): Effect.Effect<ClientState> =>
  Effect.gen(function*() {
    return {
      options,
      version: options.protocolVersion,
      clock,
      expiryMillis: options.messageExpiry === undefined ? undefined : Duration.toMillis(options.messageExpiry),
      publishQueue: yield* Queue.make<PublishRequest>({ capacity: options.capacity, strategy: options.strategy }),
      controlQueue: yield* Queue.unbounded<ControlRequest>(),
      events: yield* PubSub.sliding<MqttEvent>(4096),
      protocol: new Protocol(options.protocolVersion, options.maxInflight),
      router: new Router(),
      wake: new Wake(),
      progress: Latch.makeUnsafe(false),
      aliases: new OutgoingAliases(),
      counters: { sent: 0, received: 0, droppedNewest: 0, droppedOldest: 0, droppedOffline: 0, expired: 0, connections: 0 },
      outbox: [],
      connected: false,
      closed: false,
      stoppedWith: undefined,
      currentWriter: undefined,
      server: {},
      clientId: options.clientId,
      nextSubscriptionId: 1,
      redirectTo: undefined,
      reauthentication: undefined,
      authInbox: undefined,
      closeWith: undefined
    }
  })

/**
 * Tells the write loop there may be something to write. Requests are
 * coalesced to one per microtask: everything made ready in one synchronous
 * run (a burst of publishes, the acknowledgements of one socket read) goes
 * out in one socket write. Opening the latch directly would resume the write
 * loop on the spot (Effect resumes a latch's waiters synchronously), so every
 * publish would be its own write and its own system call.
 */
export class Wake {
  /** Opened (a microtask after a request) when the writer should look for work. */
  readonly latch: Latch.Latch = Latch.makeUnsafe(false)
  /**
   * Whether the writer has anything to look at; set by the connection. A
   * request whose work was already written (by the reader, right after the
   * read that produced it) then costs no write-loop turn.
   */
  hasWork: () => boolean = () => true
  private requested = false
  private readonly fire = () => {
    this.requested = false
    if (this.hasWork()) this.latch.openUnsafe()
  }

  request(): void {
    if (this.requested) return
    this.requested = true
    queueMicrotask(this.fire)
  }

  /** Runs the write loop now (when it is waiting): a burst that would otherwise overflow the queue before the next microtask. */
  now(): void {
    this.latch.openUnsafe()
  }
}

/** Publishes an event to `client.events` subscribers (never waits: the PubSub slides). */
export const emit = (state: ClientState, event: MqttEvent): void => {
  PubSub.publishUnsafe(state.events, event)
}

/** The oldest queued publish, without taking it (it must stay queued while the window is full). */
export const peekPublish = (state: ClientState): PublishRequest | undefined => {
  const head = state.publishQueue.messages.head
  return head === undefined ? undefined : head.array[head.offset]
}
