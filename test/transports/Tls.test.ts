/**
 * TLS and mutual TLS against mosquitto 2.0, with certificates made by openssl
 * for the test: verification failures are typed `TlsError`s saying why, and
 * are reported on `events` at every attempt.
 */
import { describe, expect, it } from "@effect/vitest"
import { NodeMqttClient } from "@effect-mqtt/node"
import { Effect, Logger, Redacted } from "effect"
import { awaitConnected } from "../helpers/Clients.ts"
import { awaitDisconnects, bounded, causes, fastRetry, recordEvents, roundTrip, startBroker } from "./shared.ts"

describe("TLS", () => {
  it.live("publishes and subscribes at QoS 0/1/2 over mqtts://, ssl:// and tls:// with a trusted CA", () =>
    Effect.gen(function*() {
      const { certs, tlsPort } = yield* startBroker()
      const ca = certs.read(certs.caCert)
      const subscriber = yield* NodeMqttClient.make({ url: `mqtts://127.0.0.1:${tlsPort}`, ca })
      for (const scheme of ["mqtts", "ssl", "tls"]) {
        // `ca` may also be a list (or a PEM bundle): any of them may sign the broker's certificate.
        const trusted = scheme === "tls" ? [certs.read(certs.otherCaCert), ca] : ca
        const publisher = yield* NodeMqttClient.make({ url: `${scheme}://127.0.0.1:${tlsPort}`, ca: trusted })
        yield* roundTrip(subscriber, publisher, `tls/${scheme}`)
      }
    }).pipe(Effect.scoped, bounded))

  it.live("servername: localhost (a DNS name of the certificate) verifies while connecting to 127.0.0.1", () =>
    Effect.gen(function*() {
      const { certs, tlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: tlsUrl, ca: certs.read(certs.caCert), servername: "localhost" })
      yield* client.publishAndWait({ topic: "tls/sni", payload: "ok", qos: 1 })
    }).pipe(Effect.scoped, bounded))

  it.live("an untrusted CA fails with TlsError UnknownCA, on events at every attempt", () =>
    Effect.gen(function*() {
      const { certs, tlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({
        url: tlsUrl,
        ca: certs.read(certs.otherCaCert),
        reconnect: fastRetry
      })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 3)
      const seen = causes(events)
      for (const cause of seen.slice(0, 3)) {
        expect(cause._tag).toBe("TlsError")
        if (cause._tag !== "TlsError") continue
        expect(cause.kind).toBe("UnknownCA")
        // mosquitto sends its CA along with its certificate: a self-signed root the client does not trust.
        expect(["SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"]).toContain(cause.code)
        expect(cause.message).toContain("not signed by a CA the client trusts")
      }
      expect(events.filter((e) => e._tag === "Reconnecting").length).toBeGreaterThanOrEqual(2)
      expect((yield* client.stats).connections).toBe(0)
    }).pipe(Effect.scoped, bounded))

  it.live("without `ca` the system roots do not trust the test CA: TlsError UnknownCA", () =>
    Effect.gen(function*() {
      const { tlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: tlsUrl, reconnect: false })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag === "TlsError" && cause.kind).toBe("UnknownCA")
    }).pipe(Effect.scoped, bounded))

  it.live("a wrong servername fails with TlsError HostnameMismatch", () =>
    Effect.gen(function*() {
      const { certs, tlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({
        url: tlsUrl,
        ca: certs.read(certs.caCert),
        servername: "broker.example.com",
        reconnect: fastRetry
      })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 2)
      for (const cause of causes(events).slice(0, 2)) {
        expect(cause._tag === "TlsError" && cause.kind).toBe("HostnameMismatch")
        expect(cause._tag === "TlsError" && cause.code).toBe("ERR_TLS_CERT_ALTNAME_INVALID")
        expect(cause.message).toContain("broker.example.com")
      }
    }).pipe(Effect.scoped, bounded))

  it.live("an expired broker certificate fails with TlsError CertificateExpired", () =>
    Effect.gen(function*() {
      const { certs, expiredTlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: expiredTlsUrl, ca: certs.read(certs.caCert), reconnect: false })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag === "TlsError" && cause.kind).toBe("CertificateExpired")
      expect(cause.message).toContain("has expired")
    }).pipe(Effect.scoped, bounded))

  it.live("rejectUnauthorized: false connects to an unverifiable broker and logs one warning", () =>
    Effect.gen(function*() {
      const { tlsUrl } = yield* startBroker()
      const logs: Array<string> = []
      const client = yield* NodeMqttClient.make({ url: tlsUrl, rejectUnauthorized: false }).pipe(
        Effect.provide(Logger.layer([Logger.make((entry) => logs.push(`${entry.logLevel} ${String(entry.message)}`))]))
      )
      yield* client.publishAndWait({ topic: "tls/insecure", payload: "accepted", qos: 1 })
      yield* client.publishAndWait({ topic: "tls/insecure", payload: "accepted", qos: 1 })
      const warnings = logs.filter((line) => line.includes("rejectUnauthorized"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/^Warn /)
    }).pipe(Effect.scoped, bounded))
})

describe("mutual TLS (require_certificate true)", () => {
  it.live("works with the client certificate: publish and subscribe at QoS 0/1/2", () =>
    Effect.gen(function*() {
      const { certs, mutualTlsUrl } = yield* startBroker()
      const options = {
        url: mutualTlsUrl,
        ca: certs.read(certs.caCert),
        cert: certs.read(certs.clientCert),
        key: Redacted.make(certs.read(certs.clientKey))
      }
      const subscriber = yield* NodeMqttClient.make(options)
      const publisher = yield* NodeMqttClient.make(options)
      yield* roundTrip(subscriber, publisher, "mtls")
    }).pipe(Effect.scoped, bounded))

  it.live("works with an encrypted key and its passphrase (PEM strings)", () =>
    Effect.gen(function*() {
      const { certs, mutualTlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({
        url: mutualTlsUrl,
        ca: certs.read(certs.caCert).toString("utf8"),
        cert: certs.read(certs.clientCert).toString("utf8"),
        key: Redacted.make(certs.read(certs.clientKeyEncrypted).toString("utf8")),
        passphrase: Redacted.make(certs.clientKeyPassphrase)
      })
      yield* awaitConnected(client)
      yield* client.publishAndWait({ topic: "mtls/encrypted", payload: "ok", qos: 2 })
    }).pipe(Effect.scoped, bounded))

  it.live("is refused without a client certificate: TlsError ClientCertificateRejected, every attempt", () =>
    Effect.gen(function*() {
      const { certs, mutualTlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({ url: mutualTlsUrl, ca: certs.read(certs.caCert), reconnect: fastRetry })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 2)
      for (const cause of causes(events).slice(0, 2)) {
        expect(cause._tag).toBe("TlsError")
        expect(cause._tag === "TlsError" && cause.kind).toBe("ClientCertificateRejected")
      }
      expect((yield* client.stats).connections).toBe(0)
    }).pipe(Effect.scoped, bounded))

  it.live("is refused with a certificate from a CA the broker does not trust: TlsError ClientCertificateRejected", () =>
    Effect.gen(function*() {
      const { certs, mutualTlsUrl } = yield* startBroker()
      const client = yield* NodeMqttClient.make({
        url: mutualTlsUrl,
        ca: certs.read(certs.caCert),
        cert: certs.read(certs.otherClientCert),
        key: Redacted.make(certs.read(certs.otherClientKey)),
        reconnect: false
      })
      const events = yield* recordEvents(client)
      yield* awaitDisconnects(events, 1)
      const [cause] = causes(events)
      expect(cause._tag === "TlsError" && cause.kind).toBe("ClientCertificateRejected")
    }).pipe(Effect.scoped, bounded))
})

describe("TLS options are checked when the client is built", () => {
  it.live("a wrong passphrase, a key without its certificate, TLS options on mqtt:// are InvalidOptions", () =>
    Effect.gen(function*() {
      const { certs, mqttUrl, mutualTlsUrl } = yield* startBroker()
      const reason = (options: NodeMqttClient.NodeMqttClientOptions) =>
        NodeMqttClient.make(options).pipe(Effect.flip, Effect.map((e) => e._tag === "InvalidOptions" ? e.message : e._tag))
      const wrongPassphrase = yield* reason({
        url: mutualTlsUrl,
        cert: certs.read(certs.clientCert),
        key: Redacted.make(certs.read(certs.clientKeyEncrypted)),
        passphrase: Redacted.make("not the passphrase")
      })
      expect(wrongPassphrase).toContain("the TLS certificates or key cannot be loaded")
      expect(wrongPassphrase).not.toContain("not the passphrase")
      expect(yield* reason({ url: mutualTlsUrl, key: Redacted.make(certs.read(certs.clientKey)) })).toContain(
        "cert and key go together"
      )
      expect(yield* reason({ url: mqttUrl, ca: certs.read(certs.caCert) })).toContain("no url uses TLS")
      // Node would silently ignore such a `ca` (and trust nothing): it is checked.
      expect(yield* reason({ url: mutualTlsUrl, ca: "not a certificate" })).toContain("ca is not a valid certificate")
      expect(yield* reason({ url: mutualTlsUrl, ca: "-----BEGIN PRIVATE KEY-----\n..." })).toContain("holds no PEM certificate")
    }).pipe(Effect.scoped, bounded))
})
