/**
 * Test certificates made with the `openssl` command line into a temp folder
 * (removed when the scope closes): a CA, a server certificate for 127.0.0.1 /
 * localhost (subject alternative names) signed by it, an expired one, a client
 * certificate (plain and with an encrypted key), and a second CA that nobody
 * trusts, with a server certificate of its own. EC P-256 keys: fast to make.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect, Schema } from "effect"
import type { Scope } from "effect"

/** `openssl` is missing or failed. */
export class OpensslFailed extends Schema.TaggedError<OpensslFailed>()("OpensslFailed", {
  message: Schema.String
}) {}

/** Paths of the generated files (PEM) and the passphrase of the encrypted client key. */
export interface Certs {
  readonly dir: string
  /** The CA that signed the server and client certificates. */
  readonly caCert: string
  /** Server certificate for IP 127.0.0.1 and DNS localhost, and its key. */
  readonly serverCert: string
  readonly serverKey: string
  /** The same server key, certified by the CA with validity dates in the past. */
  readonly expiredServerCert: string
  /** Client certificate (CN effect-mqtt-client), its key, and the key encrypted with `clientKeyPassphrase`. */
  readonly clientCert: string
  readonly clientKey: string
  readonly clientKeyEncrypted: string
  readonly clientKeyPassphrase: string
  /** A second, self-made CA that the broker and the client do not trust, and a client certificate signed by it. */
  readonly otherCaCert: string
  readonly otherClientCert: string
  readonly otherClientKey: string
  /** Reads one of the files. */
  readonly read: (file: string) => Buffer
}

const openssl = (args: ReadonlyArray<string>, cwd: string): Effect.Effect<void, OpensslFailed> =>
  Effect.callback<void, OpensslFailed>((resume) => {
    const child = ChildProcess.spawn("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] })
    const stderr: Array<Buffer> = []
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.once("error", (error) => {
      clearTimeout(timer)
      resume(Effect.fail(new OpensslFailed({ message: `openssl could not be started: ${error.message}` })))
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      resume(
        code === 0
          ? Effect.void
          : Effect.fail(
            new OpensslFailed({
              message: `openssl ${args.join(" ")} exited with ${code}: ${Buffer.concat(stderr).toString("utf8")}`
            })
          )
      )
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

/** Makes a fresh set of certificates in a temp folder owned by the current scope. */
export const make: Effect.Effect<Certs, OpensslFailed, Scope.Scope> = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-mqtt-certs-"))),
    (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )
  const run = (...args: Array<string>) => openssl(args, dir)
  const write = (name: string, text: string) => Fs.writeFileSync(Path.join(dir, name), text)
  write("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
  write("client.ext", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n")

  const ca = (name: string, cn: string) =>
    run("req", "-x509", ...EC, "-keyout", `${name}.key`, "-out", `${name}.pem`, "-days", "2", "-subj", `/CN=${cn}`)
  const request = (name: string, cn: string) =>
    run("req", ...EC, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`)
  const sign = (csr: string, caName: string, out: string, ext: string, days: string) =>
    run(
      "x509", "-req", "-in", `${csr}.csr`, "-CA", `${caName}.pem`, "-CAkey", `${caName}.key`, "-CAcreateserial",
      "-out", out, "-days", days, "-extfile", ext
    )

  yield* ca("ca", "effect-mqtt test CA")
  yield* ca("other-ca", "untrusted test CA")
  yield* request("server", "localhost")
  yield* sign("server", "ca", "server.pem", "server.ext", "2")
  // -days -1: notAfter is a day before notBefore, so the certificate has expired.
  yield* sign("server", "ca", "expired-server.pem", "server.ext", "-1")
  yield* request("client", "effect-mqtt-client")
  yield* sign("client", "ca", "client.pem", "client.ext", "2")
  const passphrase = "client-key-passphrase"
  yield* run("pkey", "-in", "client.key", "-out", "client-encrypted.key", "-aes256", "-passout", `pass:${passphrase}`)
  yield* request("other-client", "untrusted-client")
  yield* sign("other-client", "other-ca", "other-client.pem", "client.ext", "2")

  const at = (name: string) => Path.join(dir, name)
  // mosquitto may run as another user when not root: let it read the files.
  for (const file of Fs.readdirSync(dir)) Fs.chmodSync(at(file), 0o644)
  Fs.chmodSync(dir, 0o755)
  return {
    dir,
    caCert: at("ca.pem"),
    serverCert: at("server.pem"),
    serverKey: at("server.key"),
    expiredServerCert: at("expired-server.pem"),
    clientCert: at("client.pem"),
    clientKey: at("client.key"),
    clientKeyEncrypted: at("client-encrypted.key"),
    clientKeyPassphrase: passphrase,
    otherCaCert: at("other-ca.pem"),
    otherClientCert: at("other-client.pem"),
    otherClientKey: at("other-client.key"),
    read: (file: string) => Fs.readFileSync(file)
  } satisfies Certs
})

/**
 * Test policy (as for mosquitto): openssl is required; a failure is a defect
 * that fails the test, never a skip.
 */
export const requireOpenssl = <A, E, R>(
  self: Effect.Effect<A, E | OpensslFailed, R>
): Effect.Effect<A, Exclude<E, OpensslFailed>, R> =>
  Effect.catchTag(self as Effect.Effect<A, OpensslFailed, R>, "OpensslFailed", (error) =>
    Effect.die(new Error(`${error.message}\nopenssl is required to run the TLS tests.`))) as Effect.Effect<
      A,
      Exclude<E, OpensslFailed>,
      R
    >
