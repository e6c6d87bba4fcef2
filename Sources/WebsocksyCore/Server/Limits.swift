/// Per-connection limits and timeouts, fixed at start-up.
public struct Limits: Sendable {
    public var maxConnections = Configuration.defaultMaxConnections
    public var maxHeaderBytes = Configuration.defaultMaxHeaderBytes
    public var maxHeaders = Configuration.defaultMaxHeaders
    /// No data message either way for this long closes the connection (0 = never).
    public var idleTimeoutMilliseconds: Int64 = 0
    public var maxMessage: UInt64 = Configuration.defaultMaxMessage
    public var handshakeTimeoutMilliseconds: Int64 = 10_000
    /// How long connecting to a peer (resolution included) may take before the client gets 502.
    public var connectTimeoutMilliseconds: Int64 = 10_000
    /// Cap on bytes read from a peer that the framing function has not framed yet (→ 1009).
    public var peerBufferBytes = 1 << 20
    /// How long a close handshake or a final flush may take before the connection is dropped.
    public var closeTimeoutMilliseconds: Int64 = 5_000
    /// How long a web-root response may go without the client taking any of it (nginx's send_timeout).
    public var sendTimeoutMilliseconds: Int64 = 60_000
    public var pingIntervalMilliseconds: Int64 = 30_000
    /// How long a graceful shutdown waits for clients to finish their close handshakes.
    public var shutdownTimeoutMilliseconds: Int64 = 5_000
    /// Smallest free space offered to one read from a socket.
    public var readChunk = 65536
    /// Outbox size above which reading the other side pauses, and below which it resumes.
    public var outboxHighWater = 1 << 20
    public var outboxLowWater = 256 << 10
    /// Buffers that grew beyond this are freed as soon as they drain.
    public var retainedBufferBytes = 256 << 10

    public init() {}

    public init(_ config: Configuration) {
        maxMessage = config.maxMessage
        pingIntervalMilliseconds = Int64(config.pingInterval) * 1000
        handshakeTimeoutMilliseconds = Int64(config.handshakeTimeout) * 1000
        connectTimeoutMilliseconds = Int64(config.connectTimeout) * 1000
        peerBufferBytes = Int(config.peerBuffer)
        maxConnections = config.maxConnections
        maxHeaderBytes = config.maxHeaderBytes
        maxHeaders = config.maxHeaders
        idleTimeoutMilliseconds = Int64(config.idleTimeout) * 1000
        shutdownTimeoutMilliseconds = Int64(config.shutdownTimeout) * 1000
    }
}
