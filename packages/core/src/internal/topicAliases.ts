/**
 * Outgoing MQTT 5 topic aliases: the client gives topics short aliases, up to
 * the broker's Topic Alias Maximum, evicting the least recently used.
 */

export interface AliasChoice {
  readonly alias: number
  /** The broker already knows this alias: send an empty topic. */
  readonly known: boolean
}

export class OutgoingAliases {
  /** topic -> alias, in least-recently-used-first order (a Map keeps insertion order). */
  private readonly byTopic = new Map<string, number>()
  private maximum = 0

  /** A new connection: the broker knows no alias, and may allow a different number. */
  reset(maximum: number): void {
    this.byTopic.clear()
    this.maximum = maximum
  }

  get enabled(): boolean {
    return this.maximum > 0
  }

  /** The alias to send `topic` with (the least recently used one is reassigned when all are taken). */
  choose(topic: string): AliasChoice {
    const existing = this.byTopic.get(topic)
    if (existing !== undefined) {
      this.byTopic.delete(topic)
      this.byTopic.set(topic, existing)
      return { alias: existing, known: true }
    }
    let alias = this.byTopic.size + 1
    if (alias > this.maximum) {
      const [oldest, reused] = this.byTopic.entries().next().value as [string, number]
      this.byTopic.delete(oldest)
      alias = reused
    }
    this.byTopic.set(topic, alias)
    return { alias, known: false }
  }
}
