/**
 * Username/password and ACLs against mosquitto 2.0: a password file made with
 * `mosquitto_passwd -b` and an ACL file, both in the test's temp folder; and,
 * for refused subscriptions, mosquitto's dynamic security plugin. A refused
 * CONNECT is `ConnectionRefused` and stops the client (no reconnect storm);
 * ACL denials reach the caller as typed errors.
 *
 * What mosquitto 2.0.11 does (checked here):
 * - bad credentials get CONNACK "not authorized" (3.1.1: 5, v5: 0x87), never
 *   "bad username or password" (4 / 0x86);
 * - with an `acl_file`, a denied v5 publish gets PUBACK/PUBREC 0x87, a denied
 *   3.1.1 publish is acknowledged and dropped, and a SUBSCRIBE to a denied
 *   topic is *granted* (the acl_file filters delivery instead);
 * - with the dynamic security plugin, a denied SUBSCRIBE gets SUBACK 0x87 (v5)
 *   or 0x80 (3.1.1).
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect, Redacted, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Certs from "../helpers/Certs.ts"
import { authBroker, bounded, fastRetry, startBroker, USERS } from "./shared.ts"

const alice = { username: "alice", password: Redacted.make(USERS.alice) }
const bob = { username: "bob", password: Redacted.make(USERS.bob) }

/** mosquitto's dynamic security plugin (part of the mosquitto package); $MOSQUITTO_DYNSEC_PLUGIN overrides. */
const findDynsecPlugin = (): string | undefined => {
  const explicit = process.env.MOSQUITTO_DYNSEC_PLUGIN
  if (explicit !== undefined && explicit !== "") return Fs.existsSync(explicit) ? explicit : undefined
  const name = "mosquitto_dynamic_security.so"
  for (const base of ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/opt/homebrew/lib"]) {
    const candidates = [Path.join(base, name), Path.join(base, "mosquitto", name)]
    try {
      for (const entry of Fs.readdirSync(base)) {
        if (entry.endsWith("-linux-gnu")) candidates.push(Path.join(base, entry, name))
      }
    } catch {
      // no such dir
    }
    const found = candidates.find((file) => Fs.existsSync(file))
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * A broker whose users come from the dynamic security plugin (its JSON file
 * written here, passwords hashed as the plugin does: PBKDF2-SHA512): alice may
 * publish to and subscribe to allowed/# only.
 */
const dynsecBroker = Effect.gen(function*() {
  const plugin = findDynsecPlugin()
  if (plugin === undefined) {
    return yield* Effect.die(
      new Error(`${"mosquitto_dynamic_security.so"} not found (it comes with mosquitto 2.0); set MOSQUITTO_DYNSEC_PLUGIN`)
    )
  }
  const certs = yield* Certs.make.pipe(Certs.requireOpenssl)
  const user = (username: string, password: string, roles: ReadonlyArray<string>) => {
    const salt = Crypto.randomBytes(12)
    return {
      username,
      textname: username,
      roles: roles.map((rolename) => ({ rolename })),
      password: Crypto.pbkdf2Sync(password, salt, 101, 64, "sha512").toString("base64"),
      salt: salt.toString("base64"),
      iterations: 101
    }
  }
  const file = Path.join(certs.dir, "dynamic-security.json")
  Fs.writeFileSync(
    file,
    JSON.stringify({
      defaultACLAccess: { publishClientSend: false, publishClientReceive: true, subscribe: false, unsubscribe: true },
      clients: [user("alice", USERS.alice, ["limited"])],
      groups: [],
      roles: [{
        rolename: "limited",
        acls: [
          { acltype: "publishClientSend", topic: "allowed/#", priority: 0, allow: true },
          { acltype: "subscribePattern", topic: "allowed/#", priority: 0, allow: true }
        ]
      }]
    })
  )
  Fs.chmodSync(file, 0o644)
  return yield* startBroker({
    certs,
    config: ["allow_anonymous false", `plugin ${plugin}`, `plugin_opt_config_file ${file}`].join("\n")
  })
})

describe("username and password (mosquitto password file)", () => {
  for (const version of [4, 5] as const) {
    const v = version === 4 ? "3.1.1" : "5"
    it.live(`the right password connects (MQTT ${v}), given as options or in the URL (over TLS)`, () =>
      Effect.gen(function*() {
        const { mqttUrl, tlsUrl, certs } = yield* authBroker
        const fromOptions = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: version, ...alice })
        yield* fromOptions.publishAndWait({ topic: "allowed/options", payload: "ok", qos: 1 })
        const inUrl = tlsUrl.replace("mqtts://", `mqtts://alice:${encodeURIComponent(USERS.alice)}@`)
        const fromUrl = yield* NodeMqttClient.make({ url: inUrl, protocolVersion: version, ca: certs.read(certs.caCert) })
        yield* fromUrl.publishAndWait({ topic: "allowed/url", payload: "ok", qos: 1 })
      }).pipe(Effect.scoped, bounded))

    it.live(`a wrong password is ConnectionRefused (MQTT ${v}) and stops the client after one attempt`, () =>
      Effect.gen(function*() {
        const { broker, mqttUrl } = yield* authBroker
        const client = yield* NodeMqttClient.make({
          url: mqttUrl,
          protocolVersion: version,
          username: "alice",
          password: Redacted.make("not-alices-password"),
          reconnect: fastRetry
        })
        // Queued before the CONNACK arrives: its receipt fails with the refusal.
        const receipt = yield* client.publish({ topic: "allowed/x", payload: "never sent", qos: 1 })
        const failure = yield* Effect.flip(receipt.acknowledged)
        expect(failure._tag).toBe("ConnectionRefused")
        if (failure._tag === "ConnectionRefused") {
          // mosquitto 2.0 says "not authorized" for a wrong password: 5 (3.1.1), 0x87 (v5).
          expect(failure.code).toBe(version === 4 ? 5 : 0x87)
          expect(failure.message).toMatch(/not authori[sz]ed/i)
          expect(failure.message).not.toContain("not-alices-password")
        }
        // fastRetry would try every 50 ms: give it time to (not) storm.
        yield* Effect.sleep("500 millis")
        const refusals = (yield* broker.log).split("\n").filter((line) => line.includes("disconnected, not authorised"))
        expect(refusals).toHaveLength(1)
        const later = yield* Effect.flip(client.publish({ topic: "allowed/x", payload: "after", qos: 1 }))
        expect(later._tag).toBe("ClientClosed")
        expect(later.message).toContain("refused")
        expect((yield* client.stats).connections).toBe(0)
      }).pipe(Effect.scoped, bounded))
  }

  it.live("no credentials with allow_anonymous false: ConnectionRefused not authorized, one attempt (3.1.1 and 5)", () =>
    Effect.gen(function*() {
      const { broker, mqttUrl } = yield* authBroker
      for (const version of [4, 5] as const) {
        const client = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: version, reconnect: fastRetry })
        const receipt = yield* client.publish({ topic: "allowed/x", payload: "never sent", qos: 1 })
        const failure = yield* Effect.flip(receipt.acknowledged)
        expect(failure._tag === "ConnectionRefused" && failure.code).toBe(version === 4 ? 5 : 0x87)
      }
      yield* Effect.sleep("300 millis")
      const refusals = (yield* broker.log).split("\n").filter((line) => line.includes("disconnected, not authorised"))
      expect(refusals).toHaveLength(2)
    }).pipe(Effect.scoped, bounded))
})

describe("ACL file (acl_file): alice may use allowed/# only", () => {
  it.live("MQTT 5: a denied publish fails PublishRejected 0x87 at QoS 1 (PUBACK) and 2 (PUBREC); the connection stays", () =>
    Effect.gen(function*() {
      const { mqttUrl } = yield* authBroker
      const client = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: 5, ...alice })
      for (const qos of [1, 2] as const) {
        const rejected = yield* Effect.flip(client.publishAndWait({ topic: "denied/x", payload: "no", qos }))
        expect(rejected._tag).toBe("PublishRejected")
        if (rejected._tag === "PublishRejected") {
          expect(rejected.code).toBe(0x87)
          expect(rejected.topic).toBe("denied/x")
        }
      }
      const messages = yield* client.subscribeScoped("allowed/#", { qos: 1 })
      yield* client.publishAndWait({ topic: "allowed/ok", payload: "yes", qos: 1 })
      const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
      expect(message.topic).toBe("allowed/ok")
      expect((yield* client.stats).connections).toBe(1)
    }).pipe(Effect.scoped, bounded))

  for (const version of [4, 5] as const) {
    it.live(`MQTT ${version === 4 ? "3.1.1" : "5"}: a SUBSCRIBE to a denied topic is granted, but nothing is delivered`, () =>
      Effect.gen(function*() {
        const { mqttUrl } = yield* authBroker
        const client = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: version, ...alice })
        const denied = yield* client.subscribeScoped("denied/#", { qos: 1 }) // granted
        const writer = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: version, ...bob })
        const proof = yield* writer.subscribeScoped("denied/#", { qos: 1 })
        yield* writer.publishAndWait({ topic: "denied/x", payload: "for bob only", qos: 1 })
        // bob (read #) gets it, so it was published; alice's granted subscription stays silent.
        const [delivered] = yield* proof.pipe(Stream.take(1), Stream.runCollect)
        expect(delivered.topic).toBe("denied/x")
        const nothing = yield* denied.pipe(Stream.take(1), Stream.runCollect, Effect.timeoutOption("300 millis"))
        expect(nothing._tag).toBe("None")
      }).pipe(Effect.scoped, bounded))
  }

  it.live("MQTT 3.1.1: a denied publish is acknowledged (3.1.1 cannot refuse it) and dropped", () =>
    Effect.gen(function*() {
      const { mqttUrl } = yield* authBroker
      const client = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: 4, ...alice })
      const watcher = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: 4, ...bob })
      const seen = yield* watcher.subscribeScoped("#", { qos: 1 })
      yield* client.publishAndWait({ topic: "denied/x", payload: "dropped", qos: 1 })
      yield* client.publishAndWait({ topic: "denied/y", payload: "dropped", qos: 2 })
      yield* client.publishAndWait({ topic: "allowed/sentinel", payload: "delivered", qos: 1 })
      const [first] = yield* seen.pipe(Stream.take(1), Stream.runCollect)
      expect(first.topic).toBe("allowed/sentinel")
      expect((yield* client.stats).connections).toBe(1)
    }).pipe(Effect.scoped, bounded))
})

describe("dynamic security plugin: alice may publish and subscribe to allowed/# only", () => {
  for (const version of [4, 5] as const) {
    const code = version === 4 ? 0x80 : 0x87
    it.live(`MQTT ${version === 4 ? "3.1.1" : "5"}: a denied subscription fails SubscribeRejected 0x${code.toString(16)}`, () =>
      Effect.gen(function*() {
        const { mqttUrl } = yield* dynsecBroker
        const client = yield* NodeMqttClient.make({ url: mqttUrl, protocolVersion: version, ...alice })
        const refused = yield* Effect.flip(client.subscribeScoped("denied/#", { qos: 1 }))
        expect(refused._tag).toBe("SubscribeRejected")
        if (refused._tag === "SubscribeRejected") {
          expect(refused.code).toBe(code)
          expect(refused.filter).toBe("denied/#")
        }
        // As a stream too.
        const streamed = yield* client.subscribe("denied/stream", { qos: 1 }).pipe(Stream.runCollect, Effect.flip)
        expect(streamed._tag).toBe("SubscribeRejected")
        // What is allowed still works on the same connection.
        const messages = yield* client.subscribeScoped("allowed/#", { qos: 1 })
        yield* client.publishAndWait({ topic: "allowed/ok", payload: "yes", qos: 1 })
        const [message] = yield* messages.pipe(Stream.take(1), Stream.runCollect)
        expect(message.topic).toBe("allowed/ok")
        if (version === 5) {
          const rejected = yield* Effect.flip(client.publishAndWait({ topic: "denied/x", payload: "no", qos: 1 }))
          expect(rejected._tag === "PublishRejected" && rejected.code).toBe(0x87)
        }
        expect((yield* client.stats).connections).toBe(1)
      }).pipe(Effect.scoped, bounded))
  }
})
