/**
 * Broker URLs: schemes, default ports and paths, user info, query options, and
 * the reasons of `InvalidOptions` (which never contain the password).
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect, Redacted } from "effect"
import * as internalUrl from "../src/internal/url.ts"

const parse = (url: string) => Effect.runSync(NodeMqttClient.parseUrl(url))
const reason = (url: string) =>
  Effect.runSync(NodeMqttClient.parseUrl(url).pipe(Effect.flip, Effect.map((e) => e.message)))

describe("parseUrl: schemes, ports and paths", () => {
  it.each([
    ["mqtt://broker", "tcp", 1883, ""],
    ["tcp://broker", "tcp", 1883, ""],
    ["mqtt://broker/", "tcp", 1883, ""],
    ["mqtts://broker", "tls", 8883, ""],
    ["ssl://broker", "tls", 8883, ""],
    ["tls://broker", "tls", 8883, ""],
    ["MQTTS://broker", "tls", 8883, ""],
    ["ws://broker", "ws", 80, "/mqtt"],
    ["wss://broker", "wss", 443, "/mqtt"],
    ["ws://broker/", "ws", 80, "/"],
    ["ws://broker:9001/ws", "ws", 9001, "/ws"],
    ["wss://broker/mqtt?x-amz-signature=abc&clientId=c1", "wss", 443, "/mqtt?x-amz-signature=abc"],
    ["ws://broker?token=t", "ws", 80, "/mqtt?token=t"],
    ["mqtt://broker:1884", "tcp", 1884, ""]
  ] as const)("%s → %s, port %i, path %j", (url, transport, port, path) => {
    const address = parse(url)
    expect([address.transport, address.host, address.port, address.path]).toEqual([transport, "broker", port, path])
  })

  it("IPv6 hosts lose their brackets", () => {
    const address = parse("mqtts://[::1]:8884")
    expect([address.host, address.port]).toEqual(["::1", 8884])
  })

  it("unix:///path and unix://localhost/path; percent-encoding is decoded", () => {
    expect(parse("unix:///var/run/mosquitto.sock")).toMatchObject({ transport: "unix", path: "/var/run/mosquitto.sock", host: "", port: 0 })
    expect(parse("unix://localhost/tmp/my%20broker.sock").path).toBe("/tmp/my broker.sock")
  })

  it("user info becomes username and a Redacted password (percent-decoded)", () => {
    const address = parse("mqtts://sensor%40site:p%40ss%3Aw0rd@broker")
    expect(address.username).toBe("sensor@site")
    expect(Redacted.isRedacted(address.password)).toBe(true)
    expect(Redacted.value(address.password!)).toBe("p@ss:w0rd")
    expect(parse("mqtt://user-only@broker")).toMatchObject({ username: "user-only", password: undefined })
  })
})

describe("parseUrl: query options", () => {
  it("reads the client options", () => {
    const { options } = parse(
      "mqtt://broker?clientId=c-1&keepAlive=30&clean=false&protocolVersion=5&connectTimeout=2500" +
        "&sessionExpiryInterval=600&capacity=64&strategy=sliding&maxInflight=10"
    )
    expect(options).toEqual({
      clientId: "c-1",
      keepAlive: 30,
      cleanSession: false,
      protocolVersion: 5,
      connectTimeout: 2500,
      sessionExpiryInterval: 600,
      capacity: 64,
      strategy: "sliding",
      maxInflight: 10
    })
  })

  it("aliases: cleanSession / cleanStart, 1/0, protocolVersion 3.1.1 / 5.0, a duration string", () => {
    expect(parse("mqtt://b?cleanSession=0").options).toEqual({ cleanSession: false })
    expect(parse("mqtt://b?cleanStart=1").options).toEqual({ cleanSession: true })
    expect(parse("mqtt://b?protocolVersion=3.1.1").options).toEqual({ protocolVersion: 4 })
    expect(parse("mqtt://b?protocolVersion=5.0").options).toEqual({ protocolVersion: 5 })
    expect(parse("mqtt://b?connectTimeout=5%20seconds").options).toEqual({ connectTimeout: "5 seconds" })
  })

  it("the list of parameters is public", () => {
    expect(NodeMqttClient.urlQueryParameters).toContain("keepAlive")
  })
})

describe("parseUrl: InvalidOptions with the reason", () => {
  it.each([
    ["not a url", "not a valid URL"],
    ["http://broker", `scheme "http:" is not supported`],
    ["mqtt://", "has no host"],
    ["mqtt://broker:0", "port must be between 1 and 65535"],
    ["mqtt://broker:70000", "not a valid URL"],
    ["mqtt://broker/some/path", "a path is only meaningful in ws://, wss:// and unix:// URLs"],
    ["mqtt://broker?foo=1", `unknown query parameter "foo"`],
    ["unix:///tmp/x.sock?foo=1", `unknown query parameter "foo"`],
    ["mqtt://broker?keepAlive=1&keepAlive=2", "keepAlive is given more than once"],
    ["mqtt://broker?clean=1&cleanSession=0", "cleanSession is given more than once"],
    ["mqtt://broker?keepAlive=soon", "keepAlive must be a non-negative integer"],
    ["mqtt://broker?clean=maybe", "clean must be true, false, 1 or 0"],
    ["mqtt://broker?protocolVersion=3", "protocolVersion must be 4 (or 3.1.1) or 5"],
    ["mqtt://broker?strategy=fast", "strategy must be suspend, dropping or sliding"],
    ["mqtt://:secret@broker", "has a password but no username"],
    ["unix://host/tmp/x.sock", "a unix:// URL has no host"],
    ["unix:///", "has no socket path"]
  ])("%s: %s", (url, expected) => {
    expect(reason(url)).toContain(expected)
  })

  it("a reason never contains the password, the user info nor query values", () => {
    const urls = [
      "mqtt://user:s3cret-pw@broker:notaport",
      "http://user:s3cret-pw@broker",
      "user:s3cret-pw@broker:1883",
      "mqtt://user:s3c/ret-pw@broker",
      "mqtt://user:s3cret-pw@broker/path",
      "mqtt://broker?keepAlive=s3cret-pw",
      "mqtt://broker?password=s3cret-pw"
    ]
    for (const url of urls) {
      const message = reason(url)
      expect(message).not.toContain("s3cret")
      expect(message).not.toContain("s3c")
      expect(message).toContain("Invalid options")
    }
    expect(reason("mqtt://user:s3cret-pw@broker/path")).toContain(`"mqtt://<redacted>@broker/path"`)
  })
})

describe("make: URL options under explicit ones, failover lists", () => {
  // A port nothing listens on: the client is built, its connection attempts fail (reconnect: false).
  const closed = "127.0.0.1:1"

  it.effect("explicit options win over the URL's; the URL's apply otherwise", () =>
    Effect.gen(function*() {
      const fromUrl = yield* NodeMqttClient.make({ url: `mqtt://${closed}?clientId=from-url&capacity=8`, reconnect: false })
      expect(fromUrl.clientId).toBe("from-url")
      expect((yield* fromUrl.stats).capacity).toBe(8)
      const explicit = yield* NodeMqttClient.make({
        url: `mqtt://${closed}?clientId=from-url&capacity=8`,
        clientId: "explicit",
        reconnect: false
      })
      expect(explicit.clientId).toBe("explicit")
      expect((yield* explicit.stats).capacity).toBe(8)
    }).pipe(Effect.scoped))

  it.effect("URL options are validated like the others (InvalidOptions naming the field)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(NodeMqttClient.make({ url: `mqtt://${closed}?capacity=0` }))
      expect(error.message).toContain("capacity")
      const noUrl = yield* Effect.flip(NodeMqttClient.make({ url: [] }))
      expect(noUrl.message).toContain("at least one broker URL")
    }).pipe(Effect.scoped))

  it.effect("failover URLs must repeat the first URL's credentials and options, or leave them out", () =>
    Effect.gen(function*() {
      const same = yield* NodeMqttClient.make({
        url: [`mqtt://u:p@${closed}?keepAlive=10`, `mqtts://u:p@${closed}?keepAlive=10`, `ws://${closed}`],
        reconnect: false
      })
      expect(same.clientId).toMatch(/^effect-mqtt-/)
      const differs = yield* Effect.flip(
        NodeMqttClient.make({ url: [`mqtt://u:p@${closed}`, `mqtt://u:other@${closed}`], reconnect: false })
      )
      expect(differs._tag).toBe("InvalidOptions")
      expect(differs.message).toContain("differ from the first URL")
      expect(differs.message).not.toContain("other")
    }).pipe(Effect.scoped))

  it.effect("TLS options need a TLS URL; headers need a WebSocket URL; bad TLS values are named", () =>
    Effect.gen(function*() {
      const message = (options: NodeMqttClient.NodeMqttClientOptions) =>
        NodeMqttClient.make({ ...options, reconnect: false }).pipe(Effect.flip, Effect.map((e) => e.message))
      expect(yield* message({ url: `mqtt://${closed}`, servername: "x" })).toContain("servername is a TLS option")
      expect(yield* message({ url: `mqtt://${closed}`, headers: { A: "b" } })).toContain("no url is ws:// or wss://")
      expect(yield* message({ url: `mqtts://${closed}`, key: "plain" as never, cert: "x" })).toContain(
        "key must be a Redacted"
      )
      expect(yield* message({ url: `mqtts://${closed}`, passphrase: Redacted.make("p") })).toContain("there is no key")
      expect(yield* message({ url: `mqtts://${closed}`, servername: "" })).toContain("servername must be a non-empty")
      expect(yield* message({ url: `mqtts://${closed}`, alpnProtocols: [""] })).toContain("alpnProtocols")
      expect(yield* message({ url: `wss://${closed}`, headers: { "bad header": "x" } })).toContain("not a valid header name")
      expect(yield* message({ url: `mqtts://${closed}`, rejectUnauthorized: "no" as never })).toContain(
        "rejectUnauthorized must be a boolean"
      )
    }).pipe(Effect.scoped))
})

describe("serverReferenceAddress", () => {
  const base = {
    scheme: "mqtts",
    transport: "tls",
    host: "a.example",
    port: 8883,
    path: "",
    username: undefined,
    password: undefined,
    options: {}
  } as const
  it("reads host, host:port and [ipv6]:port, keeping the base transport", () => {
    expect(internalUrl.serverReferenceAddress("b.example", base)).toMatchObject({ transport: "tls", host: "b.example", port: 8883 })
    expect(internalUrl.serverReferenceAddress("b.example:9000 c.example", base)).toMatchObject({ host: "b.example", port: 9000 })
    expect(internalUrl.serverReferenceAddress("[::1]:1884", base)).toMatchObject({ host: "::1", port: 1884 })
  })
  it("ignores what it cannot read", () => {
    expect(internalUrl.serverReferenceAddress("", base)).toBeUndefined()
    expect(internalUrl.serverReferenceAddress("b.example:99999", base)).toBeUndefined()
    expect(internalUrl.serverReferenceAddress("b.example:x", base)).toBeUndefined()
  })
})
