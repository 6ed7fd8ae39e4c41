/**
 * Interop with mosquitto's own C clients: bytes we publish are read
 * byte-exact by mosquitto_sub, and bytes mosquitto_pub sends arrive byte-exact
 * on our subscription, in MQTT 3.1.1 and 5.0.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { connect } from "../helpers/Clients.ts"
import { Mosquitto, mosquittoPub, mosquittoSub, requireBroker } from "../helpers/index.ts"

/** Every byte value, plus some random bytes: NUL, newline, invalid UTF-8 all included. */
const binaryPayload = (): Uint8Array => {
  const bytes = new Uint8Array(256 + 1024)
  for (let i = 0; i < 256; i++) bytes[i] = i
  crypto.getRandomValues(bytes.subarray(256))
  return bytes
}

const versions = [
  { name: "MQTT 3.1.1", protocolVersion: 4, flag: "mqttv311" },
  { name: "MQTT 5.0", protocolVersion: 5, flag: "mqttv5" }
] as const

const bounded = <A, E, R>(self: Effect.Effect<A, E, R>) => self.pipe(Effect.timeout("15 seconds"))

for (const version of versions) {
  describe(`interop, ${version.name}`, () => {
    it.live("a message we publish is read byte-exact by mosquitto_sub", () =>
      Effect.gen(function*() {
        const broker = yield* Mosquitto.start().pipe(requireBroker)
        const payload = binaryPayload()
        const client = yield* connect(broker.url, { protocolVersion: version.protocolVersion })
        // Retained, so mosquitto_sub gets it whenever it subscribes: no race with its start-up.
        yield* client.publishAndWait({ topic: "interop/out", payload, qos: 1, retain: true })
        const result = yield* mosquittoSub([
          "-h", broker.host, "-p", String(broker.port), "-V", version.flag,
          "-t", "interop/out", "-q", "1", "-C", "1", "-W", "10", "-N"
        ]).pipe(requireBroker)
        expect(result.code).toBe(0)
        expect(Buffer.compare(result.stdout, Buffer.from(payload))).toBe(0)
      }).pipe(Effect.scoped, bounded))

    it.live("a message mosquitto_pub sends arrives byte-exact on our subscription", () =>
      Effect.gen(function*() {
        const broker = yield* Mosquitto.start().pipe(requireBroker)
        const payload = binaryPayload()
        const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-interop-")), "payload.bin")
        Fs.writeFileSync(file, payload)
        const client = yield* connect(broker.url, { protocolVersion: version.protocolVersion })
        const messages = yield* client.subscribeScoped("interop/in", { qos: 2 })
        const pub = yield* mosquittoPub([
          "-h", broker.host, "-p", String(broker.port), "-V", version.flag,
          "-t", "interop/in", "-q", "2", "-f", file
        ]).pipe(requireBroker)
        expect(pub.code).toBe(0)
        const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
        expect(message.qos).toBe(2)
        expect(Buffer.compare(Buffer.from(message.payload), Buffer.from(payload))).toBe(0)
        Fs.rmSync(Path.dirname(file), { recursive: true, force: true })
      }).pipe(Effect.scoped, bounded))
  })
}
