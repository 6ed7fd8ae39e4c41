/**
 * A minimal MQTT 3.1.1 peer in place of a broker, so that a client, not the
 * broker, is what limits a run. It routes nothing and keeps no sessions: it
 * answers CONNECT, SUBSCRIBE, PINGREQ and every PUBLISH (PUBACK, or PUBREC
 * then PUBCOMP), and once the client subscribes it sends it `count` PUBLISH
 * packets at the granted QoS, at most `window` unacknowledged. Everything it
 * answers to one socket read goes out in one write, and a batch of PUBLISH
 * packets in one write, so its cost per message is a fraction of the clients'.
 *
 * Why: through mosquitto, workload 1 measures mosquitto (RESULTS.md, "Targets
 * missed"). Against this peer the same window workload measures the client.
 */
import * as Net from "node:net"
import { now, send, usage } from "../measure.ts"
import type { PeerResult, PeerSpec } from "../protocol.ts"

const CONNACK = Buffer.from([0x20, 0x02, 0x00, 0x00])
const PINGRESP = Buffer.from([0xd0, 0x00])

/** Packets of this QoS written per batch when no window applies (QoS 0), before yielding to the event loop. */
const QOS0_BATCH = 1_000

const ack = (type: number, high: number, low: number) => Buffer.from([type, 0x02, high, low])

/** One PUBLISH packet, the packet id at `idOffset` (QoS 1/2) for `stamp` to fill in. */
const publishTemplate = (topic: string, qos: number, payloadSize: number) => {
  const topicLength = Buffer.byteLength(topic)
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + payloadSize
  if (remaining > 127) throw new Error("the peer's PUBLISH template supports packets of up to 127 bytes")
  const packet = Buffer.alloc(2 + remaining)
  packet[0] = 0x30 | (qos << 1)
  packet[1] = remaining
  packet.writeUInt16BE(topicLength, 2)
  packet.write(topic, 4)
  return { packet, idOffset: 4 + topicLength }
}

export const peer = (spec: PeerSpec): Promise<PeerResult> =>
  new Promise((resolve, reject) => {
    let publishesReceived = 0
    let publishesSent = 0
    let firstSentAt = 0

    const serve = (socket: Net.Socket) => {
      socket.setNoDelay(true)
      let pending: Buffer = Buffer.alloc(0)
      let feedQos = 0
      let unacknowledged = 0
      let template: ReturnType<typeof publishTemplate> | undefined

      /** Sends as many of the `count` PUBLISH packets as the window allows, in one write. */
      const feed = () => {
        if (template === undefined || socket.destroyed) return
        const room = feedQos === 0 ? QOS0_BATCH : spec.window - unacknowledged
        const n = Math.min(room, spec.count - publishesSent)
        if (n <= 0) return
        const size = template.packet.length
        const batch = Buffer.allocUnsafe(n * size)
        for (let i = 0; i < n; i++) {
          template.packet.copy(batch, i * size)
          if (feedQos > 0) batch.writeUInt16BE(((publishesSent + i) % 65_535) + 1, i * size + template.idOffset)
        }
        if (firstSentAt === 0) firstSentAt = now()
        publishesSent += n
        if (feedQos > 0) unacknowledged += n
        const drained = socket.write(batch)
        if (feedQos === 0 && publishesSent < spec.count) {
          if (drained) setImmediate(feed)
          else socket.once("drain", feed)
        }
      }

      socket.on("data", (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
        const replies: Array<Buffer> = []
        let freed = 0
        let subscribed = false
        let offset = 0
        for (;;) {
          if (pending.length - offset < 2) break
          let remaining = 0
          let multiplier = 1
          let at = offset + 1
          let byte = 0x80
          while (byte & 0x80) {
            if (at >= pending.length) break
            byte = pending[at++]
            remaining += (byte & 0x7f) * multiplier
            multiplier *= 128
          }
          if (byte & 0x80 || pending.length < at + remaining) break
          const header = pending[offset]
          switch (header >> 4) {
            case 1: // CONNECT
              replies.push(CONNACK)
              break
            case 3: { // PUBLISH
              publishesReceived++
              const qos = (header >> 1) & 3
              if (qos > 0) {
                const idAt = at + 2 + ((pending[at] << 8) | pending[at + 1])
                replies.push(ack(qos === 1 ? 0x40 : 0x50, pending[idAt], pending[idAt + 1]))
              }
              break
            }
            case 4: // PUBACK of what we sent
            case 7: // PUBCOMP
              freed++
              break
            case 5: // PUBREC: release it
              replies.push(ack(0x62, pending[at], pending[at + 1]))
              break
            case 6: // PUBREL of what we received
              replies.push(ack(0x70, pending[at], pending[at + 1]))
              break
            case 8: { // SUBSCRIBE: one topic filter, granted at the QoS asked for
              const topicLength = (pending[at + 2] << 8) | pending[at + 3]
              const topic = pending.toString("utf8", at + 4, at + 4 + topicLength)
              feedQos = pending[at + 4 + topicLength] & 3
              replies.push(Buffer.from([0x90, 0x03, pending[at], pending[at + 1], feedQos]))
              template = publishTemplate(topic, feedQos, spec.payloadSize)
              subscribed = true
              break
            }
            case 12: // PINGREQ
              replies.push(PINGRESP)
              break
            case 14: // DISCONNECT
              socket.end()
              break
          }
          offset = at + remaining
        }
        pending = pending.subarray(offset)
        if (replies.length > 0) socket.write(replies.length === 1 ? replies[0] : Buffer.concat(replies))
        unacknowledged -= freed
        if (subscribed || freed > 0) feed()
      })
      socket.on("error", () => {})
      // One client per run: its connection closing ends the run.
      socket.once("close", () => {
        server.close()
        resolve({ role: "peer", publishesReceived, publishesSent, firstSentAt, ...usage() })
      })
    }

    const server = Net.createServer(serve)
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => send({ type: "ready", port: (server.address() as Net.AddressInfo).port }))
    setTimeout(() => reject(new Error(`no client finished within ${spec.timeoutMs} ms`)), spec.timeoutMs).unref()
  })
