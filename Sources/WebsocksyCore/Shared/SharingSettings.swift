/// One peer for all clients of a route (`share`), and what happens to a client that cannot keep
/// up with it (`slow-client`, `slow-client-limit`).
public struct SharingSettings: Equatable, Sendable {
    public enum Mode: String, Sendable {
        /// What the peer sends goes to every client; what clients send goes to the peer.
        case broadcast
        /// Viewers: what clients send is dropped (and counted).
        case readonly
    }

    public enum SlowClient: String, Sendable {
        /// Messages for a client with more than `slowClientLimit` bytes waiting are dropped, counted.
        case drop
        /// Such a client is closed with 1008.
        case close
        /// The peer is not read until every client is below the limit again (everyone waits).
        case hold
    }

    public var mode = Mode.broadcast
    public var slowClient = SlowClient.drop
    public var slowClientLimit = 1 << 20
    /// `share-open = start`: opened when the gateway starts (and kept open, reading, with no
    /// client) rather than with its first client.
    public var openAtStart = false

    public init() {}

    /// `share = off|broadcast|readonly` as the option spells it: nil for off.
    public static func mode(_ text: String) -> Mode?? {
        if text == "off" { return .some(nil) }
        return Mode(rawValue: text).map { .some($0) }
    }
}
