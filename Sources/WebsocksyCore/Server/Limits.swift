import Glibc

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
    /// How long a plugin backend's query may take before the client gets 504.
    public var backendTimeoutMilliseconds: Int64 = 5_000
    /// Cap on bytes read from a peer that the framing function has not framed yet (→ 1009).
    public var peerBufferBytes = 1 << 20
    /// Process-wide budget for bytes buffered for message assembly and queues (`buffer-memory`).
    public var bufferMemoryBytes = Limits.automaticBufferMemory()
    /// How long a close handshake or a final flush may take before the connection is dropped.
    public var closeTimeoutMilliseconds: Int64 = 5_000
    /// How long a web-root response may go without the client taking any of it (nginx's send_timeout).
    public var sendTimeoutMilliseconds: Int64 = 60_000
    public var pingIntervalMilliseconds: Int64 = 30_000
    /// How long a graceful shutdown waits for clients to finish their close handshakes.
    public var shutdownTimeoutMilliseconds: Int64 = 5_000
    /// After SIGTERM, how long the gateway stays up answering /readyz with 503 before it stops.
    public var drainDelayMilliseconds: Int64 = 0
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
        pingIntervalMilliseconds = Self.milliseconds(config.pingInterval)
        handshakeTimeoutMilliseconds = Self.milliseconds(config.handshakeTimeout)
        connectTimeoutMilliseconds = Self.milliseconds(config.connectTimeout)
        backendTimeoutMilliseconds = Self.milliseconds(config.backendTimeout)
        peerBufferBytes = Int(clamping: config.peerBuffer)
        bufferMemoryBytes = config.bufferMemory == 0 ? Self.automaticBufferMemory() : Int(clamping: config.bufferMemory)
        maxConnections = config.maxConnections
        maxHeaderBytes = config.maxHeaderBytes
        maxHeaders = config.maxHeaders
        idleTimeoutMilliseconds = Self.milliseconds(config.idleTimeout)
        shutdownTimeoutMilliseconds = Self.milliseconds(config.shutdownTimeout)
        drainDelayMilliseconds = Self.milliseconds(config.drainDelay)
    }

    /// Seconds as milliseconds, held to the range the parser admits: `now + timeout` can then never
    /// overflow, even for a `Configuration` built in code rather than parsed.
    static func milliseconds(_ seconds: Int) -> Int64 {
        Int64(min(max(seconds, 0), Configuration.maxSeconds)) * 1000
    }

    /// `buffer-memory = auto`: a quarter of physical memory, or 1G when the system does not say.
    static func automaticBufferMemory() -> Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return 1 << 30 }
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? Int.max / 4 : bytes / 4
    }
}
