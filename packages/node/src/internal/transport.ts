/**
 * One `Socket.Socket` per broker address: TCP, TLS, WebSocket (plain and
 * secure) or a Unix socket, over `@effect/platform-node`. Also validates the
 * TLS and WebSocket options once, up front, into `InvalidOptions`.
 */
import { WebSocket } from "@effect/platform-node/NodeWS"
import { MqttError } from "@effect-mqtt/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Redacted from "effect/Redacted"
import type * as Duration from "effect/Duration"
import * as Socket from "effect/socket/Socket"
import { Buffer } from "node:buffer"
import { X509Certificate } from "node:crypto"
import * as Net from "node:net"
import * as Tls from "node:tls"
import * as StreamSockets from "./streamSockets.ts"
import type { BrokerAddress } from "./url.ts"
import type { TlsOptions } from "../NodeMqttClient.ts"

/** PEM text or DER/PEM bytes, one or several. */
export type Material = string | Uint8Array | ReadonlyArray<string | Uint8Array>

/** The TLS options as the user gives them (the public `TlsOptions`). */
export type TlsInput = TlsOptions

/** Validated TLS settings. The key and passphrase stay `Redacted` until a socket is opened. */
export interface ResolvedTls {
  readonly secureContext: Tls.SecureContext
  readonly ca: Array<Buffer> | undefined
  readonly cert: Array<Buffer> | undefined
  readonly key: Redacted.Redacted<string | Uint8Array> | undefined
  readonly passphrase: Redacted.Redacted<string> | undefined
  readonly servername: string | undefined
  readonly alpnProtocols: Array<string> | undefined
  readonly rejectUnauthorized: boolean
}

/** Validated WebSocket settings. */
export interface ResolvedWebSocket {
  readonly headers: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
}

const invalid = (reason: string) => new MqttError.InvalidOptions({ reason })

const isMaterialItem = (u: unknown): u is string | Uint8Array => typeof u === "string" || u instanceof Uint8Array

const toBuffers = (
  name: string,
  material: unknown
): MqttError.InvalidOptions | Array<Buffer> | undefined => {
  if (material === undefined) return undefined
  const items = Array.isArray(material) ? material : [material]
  if (items.length === 0 || !items.every(isMaterialItem)) {
    return invalid(`${name} must be PEM text or bytes (a string or Uint8Array), or a non-empty array of them`)
  }
  return items.map((item) => typeof item === "string" ? Buffer.from(item, "utf8") : Buffer.from(item))
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g

/**
 * Node silently ignores a `ca` it cannot parse (and then trusts nothing):
 * check that every item is certificates, PEM (one or a bundle) or DER.
 */
const caProblem = (ca: ReadonlyArray<Buffer>): string | undefined => {
  for (let i = 0; i < ca.length; i++) {
    const text = ca[i].toString("latin1")
    const blocks = text.includes("-----BEGIN") ? text.match(PEM_CERTIFICATE) ?? [] : [ca[i]]
    const where = ca.length === 1 ? "ca" : `ca[${i}]`
    if (blocks.length === 0) return `${where} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`
    for (const block of blocks) {
      try {
        new X509Certificate(block)
      } catch (cause) {
        return `${where} is not a valid certificate: ${errorMessage(cause)}`
      }
    }
  }
  return undefined
}

const errorMessage = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

const TLS_TRANSPORTS = new Set(["tls", "wss"])

/**
 * Validates the TLS options. `undefined` when no URL uses TLS (then giving a
 * TLS option is a mistake: the connection would not be secure).
 */
export const resolveTls = (
  input: TlsInput,
  addresses: ReadonlyArray<BrokerAddress>
): Effect.Effect<ResolvedTls | undefined, MqttError.InvalidOptions> =>
  Effect.suspend((): Effect.Effect<ResolvedTls | undefined, MqttError.InvalidOptions> => {
    const given = (["ca", "cert", "key", "passphrase", "servername", "alpnProtocols"] as const).filter((name) =>
      input[name] !== undefined
    )
    if (!addresses.some((address) => TLS_TRANSPORTS.has(address.transport))) {
      return given.length === 0
        ? Effect.succeed(undefined)
        : Effect.fail(invalid(
          `${given.join(", ")} ${given.length === 1 ? "is a TLS option" : "are TLS options"}, but no url uses TLS ` +
            `(mqtts://, ssl://, tls:// or wss://)`
        ))
    }
    const ca = toBuffers("ca", input.ca)
    if (ca instanceof MqttError.InvalidOptions) return Effect.fail(ca)
    const badCa = ca === undefined ? undefined : caProblem(ca)
    if (badCa !== undefined) return Effect.fail(invalid(badCa))
    const cert = toBuffers("cert", input.cert)
    if (cert instanceof MqttError.InvalidOptions) return Effect.fail(cert)
    const { key, passphrase } = input
    if (key !== undefined && !(Redacted.isRedacted(key) && isMaterialItem(Redacted.value(key)))) {
      return Effect.fail(invalid("key must be a Redacted PEM string or bytes (Redacted.make(...))"))
    }
    if (passphrase !== undefined && !(Redacted.isRedacted(passphrase) && typeof Redacted.value(passphrase) === "string")) {
      return Effect.fail(invalid("passphrase must be a Redacted string (Redacted.make(...))"))
    }
    if ((cert === undefined) !== (key === undefined)) {
      return Effect.fail(invalid("cert and key go together: give both for a client certificate, or neither"))
    }
    if (passphrase !== undefined && key === undefined) {
      return Effect.fail(invalid("passphrase is for an encrypted key, but there is no key"))
    }
    if (input.servername !== undefined && (typeof input.servername !== "string" || input.servername === "")) {
      return Effect.fail(invalid("servername must be a non-empty string"))
    }
    const alpn = input.alpnProtocols
    if (
      alpn !== undefined &&
      (!Array.isArray(alpn) || !alpn.every((p) => typeof p === "string" && p.length > 0 && p.length < 256))
    ) {
      return Effect.fail(invalid("alpnProtocols must be an array of non-empty protocol names"))
    }
    if (input.rejectUnauthorized !== undefined && typeof input.rejectUnauthorized !== "boolean") {
      return Effect.fail(invalid("rejectUnauthorized must be a boolean"))
    }
    // Load the certificates and key once: a bad PEM or a wrong passphrase fails here, not at every attempt.
    // OpenSSL's messages name the problem, never the key material.
    let secureContext: Tls.SecureContext
    try {
      secureContext = Tls.createSecureContext({
        ...(ca === undefined ? {} : { ca }),
        ...(cert === undefined ? {} : { cert }),
        ...(key === undefined ? {} : { key: Buffer.from(Redacted.value(key)) }),
        ...(passphrase === undefined ? {} : { passphrase: Redacted.value(passphrase) })
      })
    } catch (cause) {
      return Effect.fail(invalid(`the TLS certificates or key cannot be loaded: ${errorMessage(cause)}`))
    }
    return Effect.succeed({
      secureContext,
      ca,
      cert,
      key,
      passphrase,
      servername: input.servername,
      alpnProtocols: alpn === undefined ? undefined : [...alpn],
      rejectUnauthorized: input.rejectUnauthorized ?? true
    })
  })

/** Validates the WebSocket options; `headers` without a ws:// or wss:// URL is a mistake. */
export const resolveWebSocket = (
  headers: unknown,
  addresses: ReadonlyArray<BrokerAddress>
): Effect.Effect<ResolvedWebSocket, MqttError.InvalidOptions> =>
  Effect.suspend((): Effect.Effect<ResolvedWebSocket, MqttError.InvalidOptions> => {
    if (headers === undefined) return Effect.succeed({ headers: undefined })
    if (!addresses.some((address) => address.transport === "ws" || address.transport === "wss")) {
      return Effect.fail(invalid("headers are WebSocket handshake headers, but no url is ws:// or wss://"))
    }
    if (typeof headers !== "object" || headers === null || Array.isArray(headers)) {
      return Effect.fail(invalid("headers must be a record of header names to values"))
    }
    for (const [name, value] of Object.entries(headers)) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) {
        return Effect.fail(invalid(`headers: ${JSON.stringify(name)} is not a valid header name`))
      }
      if (typeof value !== "string" && !(Redacted.isRedacted(value) && typeof Redacted.value(value) === "string")) {
        return Effect.fail(invalid(`headers: the value of ${name} must be a string or a Redacted string`))
      }
    }
    return Effect.succeed({ headers: headers as Record<string, string | Redacted.Redacted<string>> })
  })

/** SNI must be a host name; an IP `servername` is checked against the certificate without being sent. */
const serverIdentity = (servername: string | undefined) => {
  if (servername === undefined) return {}
  if (Net.isIP(servername) === 0) return { servername }
  return {
    checkServerIdentity: (_host: string, cert: Tls.PeerCertificate) => Tls.checkServerIdentity(servername, cert)
  }
}

const urlHost = (host: string) => host.includes(":") ? `[${host}]` : host

/** Above this many bytes waiting in a WebSocket's send buffer, a write waits until its frame is flushed. */
const WS_HIGH_WATER_MARK = 1024 * 1024

const concat = (chunks: ReadonlyArray<Uint8Array | string>): Uint8Array => {
  if (chunks.length === 1 && typeof chunks[0] !== "string") return chunks[0]
  return Buffer.concat(chunks.map((chunk) => typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk))
}

/**
 * A WebSocket (`ws` package) carrying MQTT: subprotocol `mqtt`, binary frames.
 * A batch of packets goes out as one frame; the broker's packets may span
 * frames or share one (the core's decoder is streaming). Writes wait for the
 * send buffer to drain when it holds more than 1 MiB. When the client closes,
 * closing waits (up to `FLUSH_TIMEOUT`) until the frames sent have left.
 */
const makeWebSocket = (
  url: string,
  options: () => WebSocket.ClientOptions,
  openTimeout: Duration.Input | undefined
): Effect.Effect<Socket.Socket> =>
  Effect.gen(function*() {
    let current: WebSocket | undefined
    const inner = yield* Socket.fromWebSocket(
      Effect.acquireRelease(
        Effect.try({
          try: () => {
            const ws = new WebSocket(url, ["mqtt"], options())
            current = ws
            return ws as unknown as Socket.WebSocketLike
          },
          catch: (cause) => new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause }) })
        }),
        (acquired, exit) => {
          const ws = acquired as unknown as WebSocket
          if (current === ws) current = undefined
          const wasOpen = ws.readyState === WebSocket.OPEN
          try {
            ws.close(1000)
          } catch {
            // already closed or never opened
          }
          // As for TCP (see streamSockets.ts): when the client closes, wait for the frames already sent to leave.
          if (!wasOpen || !(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause))) return Effect.void
          // `ws` emits "close" once the close handshake is done and the TCP socket closed: after every frame sent.
          return StreamSockets.untilClosed(ws, () => ws.readyState === WebSocket.CLOSED).pipe(
            Effect.timeoutOption(StreamSockets.FLUSH_TIMEOUT),
            Effect.andThen(Effect.sync(() => ws.terminate()))
          )
        }
      ),
      openTimeout === undefined ? undefined : { openTimeout }
    )
    const writer = Effect.map(inner.writer, (write): Socket.Writer => {
      const writeFrame = (frame: Uint8Array): Effect.Effect<void, Socket.SocketError> =>
        Effect.suspend(() => {
          const ws = current
          if (ws === undefined || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount < WS_HIGH_WATER_MARK) {
            return write.write(frame)
          }
          return Effect.callback<void, Socket.SocketError>((resume) => {
            ws.send(frame, (cause) =>
              resume(
                cause === undefined || cause === null
                  ? Effect.void
                  : Effect.fail(new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) }))
              ))
          })
        })
      return {
        write: (chunk) => Socket.isCloseEvent(chunk) ? write.write(chunk) : writeFrame(concat([chunk])),
        writeAll: (chunks) => writeFrame(concat(chunks))
      }
    })
    return Socket.make({ reader: inner.reader, writer })
  })

/** The socket for one broker address. */
export const makeSocket = (
  address: BrokerAddress,
  tls: ResolvedTls | undefined,
  ws: ResolvedWebSocket,
  openTimeout: Duration.Input | undefined
): Effect.Effect<Socket.Socket> => {
  const timeout = openTimeout === undefined ? {} : { openTimeout }
  switch (address.transport) {
    case "tcp":
      return StreamSockets.makeNet({ host: address.host, port: address.port, noDelay: true, ...timeout })
    case "unix":
      return StreamSockets.makeNet({ path: address.path, ...timeout })
    case "tls": {
      const settings = tls!
      return StreamSockets.makeTls({
        host: address.host,
        port: address.port,
        // Passed on to the TCP socket by tls.connect (missing from its type).
        ...({ noDelay: true } as object),
        secureContext: settings.secureContext,
        rejectUnauthorized: settings.rejectUnauthorized,
        ...(settings.alpnProtocols === undefined ? {} : { ALPNProtocols: settings.alpnProtocols }),
        ...serverIdentity(settings.servername),
        ...timeout
      })
    }
    case "ws":
    case "wss": {
      const url = `${address.transport}://${urlHost(address.host)}:${address.port}${address.path}`
      // Built when each connection opens: the key and secret headers stay Redacted until then.
      const base = (): WebSocket.ClientOptions => {
        const headers: Record<string, string> = {}
        for (const [name, value] of Object.entries(ws.headers ?? {})) {
          headers[name] = Redacted.isRedacted(value) ? Redacted.value(value) : value
        }
        return { perMessageDeflate: false, headers }
      }
      if (address.transport === "ws") return makeWebSocket(url, base, openTimeout)
      const settings = tls!
      return makeWebSocket(url, () => ({
        ...base(),
        ...(settings.ca === undefined ? {} : { ca: settings.ca }),
        ...(settings.cert === undefined ? {} : { cert: settings.cert }),
        ...(settings.key === undefined ? {} : { key: Buffer.from(Redacted.value(settings.key)) }),
        ...(settings.passphrase === undefined ? {} : { passphrase: Redacted.value(settings.passphrase) }),
        ...(settings.alpnProtocols === undefined ? {} : { ALPNProtocols: settings.alpnProtocols }),
        rejectUnauthorized: settings.rejectUnauthorized,
        ...(serverIdentity(settings.servername) as Partial<WebSocket.ClientOptions>)
      }), openTimeout)
    }
  }
}
