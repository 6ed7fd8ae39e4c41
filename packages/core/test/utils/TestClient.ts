/**
 * Helpers shared by the client's unit tests: a client over a FakeBroker, a way
 * to let fibers run without time passing, and an event recorder.
 */
import { Effect, Stream } from "effect"
import * as Socket from "effect/socket/Socket"
import { MqttClient, type MqttEvent } from "../../src/index.ts"
import type { MqttClientOptions } from "../../src/MqttOptions.ts"
import type * as FakeBroker from "./FakeBroker.ts"

export const makeClient = (broker: FakeBroker.FakeBroker, options: MqttClientOptions = {}) =>
  MqttClient.make(options).pipe(Effect.provideService(Socket.Socket, broker.socket))

/** Lets every runnable fiber make progress (no clock time passes). */
export const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

/** Records the client's events from now on. */
export const recordEvents = (client: MqttClient.Service) =>
  Effect.gen(function*() {
    const events: Array<MqttEvent.MqttEvent> = []
    yield* client.events.pipe(Stream.runForEach((event) => Effect.sync(() => events.push(event))), Effect.forkScoped)
    yield* settle
    return events
  })
