/// What a stream endpoint tells its owner. Calls come only from the event loop (the endpoint's own
/// events or a deferred wake-up), never from inside a call the owner made on the endpoint — `send`,
/// `pauseReading`, `resumeReading`, `startTLS` and `finish` report nothing synchronously — so an
/// owner is never re-entered in the middle of its own work.
protocol StreamEndpointOwner: AnyObject {
    /// `count` new bytes were appended to `endpoint.inbox`.
    func endpointReceived(_ endpoint: StreamEndpoint, count: Int)
    /// Reading resumed with bytes still held in the inbox: look at them again.
    func endpointResumed(_ endpoint: StreamEndpoint)
    /// The other side finished sending (EOF). Writing may go on.
    func endpointEnded(_ endpoint: StreamEndpoint)
    /// The outbox is at or below the low-water mark after a write the socket was waiting for.
    func endpointDrained(_ endpoint: StreamEndpoint)
    /// The TLS handshake started with `startTLS` completed.
    func endpointSecured(_ endpoint: StreamEndpoint)
    /// The socket failed (`error`) or the other side closed it completely (nil): the endpoint is closed.
    func endpointClosed(_ endpoint: StreamEndpoint, error: IOFailure?)
}
