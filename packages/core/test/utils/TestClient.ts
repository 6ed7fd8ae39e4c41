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

/** A client over `broker` whose socket writes go through `write` (which can fail them, or pass them on). */
export const makeClientWithWrite = (
  broker: FakeBroker.FakeBroker,
  write: (chunk: Uint8Array | string | Socket.CloseEvent, next: Socket.Writer["write"]) => ReturnType<Socket.Writer["write"]>
) =>
  MqttClient.make({}).pipe(Effect.provideService(
    Socket.Socket,
    Socket.make({
      reader: broker.socket.reader,
      writer: Effect.map(broker.socket.writer, (writer) => ({ write: (chunk) => write(chunk, writer.write), writeAll: writer.writeAll }))
    })
  ))

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
