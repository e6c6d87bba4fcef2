import Glibc

/// What `/metrics` reports. Nothing is counted per message: a connection's bytes and messages are
/// in its access-log record already, so they are added here once, when it ends, and the records of
/// open connections are summed when Prometheus scrapes. Other counters move once per connection
/// or per event (an upgrade, a refusal, a TLS handshake, a query).
final class Metrics {
    /// Bytes and messages each way, from the client's point of view: `in` is what clients sent.
    struct Traffic {
        var messagesIn = 0, bytesIn = 0, messagesOut = 0, bytesOut = 0
        /// Messages of a shared peer not delivered to a slow client, or from a client not delivered.
        var dropped = 0

        mutating func add(_ record: ConnectionRecord) {
            dropped += record.dropped
            messagesIn += record.messagesIn
            bytesIn += record.bytesIn
            messagesOut += record.messagesOut
            bytesOut += record.bytesOut
        }
    }

    /// Gauges read from the server at scrape time.
    struct Snapshot {
        var connections = 0
        var webSockets = 0
        var finishing = 0
        var openTraffic = Traffic()
        var queuedBytes = 0
        var budgetBytes = 0
        var ready = true
        var trackedClients = 0
    }

    var accepted = 0
    var upgrades = 0
    var withoutRequest = 0
    private(set) var refusals: [Int: Int] = [:]
    private(set) var closes: [UInt16: Int] = [:]
    private(set) var endedTraffic = Traffic()
    var tlsHandshakes = 0
    var tlsFailures = 0
    var peerConnect = Histogram()
    var backendQuery = Histogram()
    let startedAt = time(nil)

    /// An upgrade (or the request a connection could not make) refused with `status`.
    func refused(_ status: Int) {
        refusals[status, default: 0] += 1
    }

    /// A connection leaves: its traffic joins the totals, its close code is counted.
    func connectionEnded(_ record: ConnectionRecord) {
        guard record.status == 101 else { return }
        endedTraffic.add(record)
        closes[record.closeCode ?? 1006, default: 0] += 1
    }

    func render(_ now: Snapshot) -> String {
        var out = PrometheusText()
        out.single("websocksy_up", "gauge", "1 while the process serves; /readyz says whether it takes new clients.", 1)
        out.single("websocksy_ready", "gauge", "1 until a graceful stop begins (then /readyz answers 503).", now.ready ? 1 : 0)
        out.single("websocksy_start_time_seconds", "gauge", "Start of the process, seconds since the epoch.", startedAt)
        out.single("websocksy_connections_open", "gauge", "Client connections open (any state).", now.connections)
        out.single("websocksy_websockets_open", "gauge", "Connections bridged to a peer after a 101.", now.webSockets)
        out.single("websocksy_endpoints_finishing", "gauge", "Sockets flushing or lingering after their connection ended.", now.finishing)
        out.single("websocksy_connections_accepted_total", "counter", "Client connections accepted.", accepted)
        out.single("websocksy_connections_without_request_total", "counter",
                   "Connections closed before sending a byte of a request (preconnects, port checks).", withoutRequest)
        out.single("websocksy_upgrades_total", "counter", "WebSocket upgrades answered with 101.", upgrades)
        out.family("websocksy_handshake_refusals_total", "counter", "Upgrades refused, by HTTP status.")
        for status in refusals.keys.sorted() { out.sample("websocksy_handshake_refusals_total", [("status", String(status))], refusals[status]!) }
        out.family("websocksy_websocket_closes_total", "counter", "Bridged connections ended, by close code (1006: no close frame).")
        for code in closes.keys.sorted() { out.sample("websocksy_websocket_closes_total", [("code", String(code))], closes[code]!) }
        var traffic = endedTraffic
        traffic.messagesIn += now.openTraffic.messagesIn
        traffic.bytesIn += now.openTraffic.bytesIn
        traffic.messagesOut += now.openTraffic.messagesOut
        traffic.bytesOut += now.openTraffic.bytesOut
        traffic.dropped += now.openTraffic.dropped
        out.family("websocksy_messages_total", "counter", "Data messages: in = from clients, out = to clients.")
        out.sample("websocksy_messages_total", [("direction", "in")], traffic.messagesIn)
        out.sample("websocksy_messages_total", [("direction", "out")], traffic.messagesOut)
        out.family("websocksy_payload_bytes_total", "counter", "Message payload bytes: in = from clients, out = to clients.")
        out.sample("websocksy_payload_bytes_total", [("direction", "in")], traffic.bytesIn)
        out.sample("websocksy_payload_bytes_total", [("direction", "out")], traffic.bytesOut)
        out.single("websocksy_shared_dropped_messages_total", "counter",
                   "Messages of shared peers dropped: for clients too slow (slow-client = drop), or sent by read-only clients.", traffic.dropped)
        out.family("websocksy_tls_handshakes_total", "counter", "Client TLS handshakes, by result.")
        out.sample("websocksy_tls_handshakes_total", [("result", "ok")], tlsHandshakes)
        out.sample("websocksy_tls_handshakes_total", [("result", "failed")], tlsFailures)
        out.single("websocksy_queued_bytes", "gauge", "Bytes waiting in send queues, to clients and to peers.", now.queuedBytes)
        out.single("websocksy_buffer_memory_bytes", "gauge", "Bytes held against buffer-memory (assembled messages).", now.budgetBytes)
        out.single("websocksy_limited_clients", "gauge", "Client addresses tracked by the per-client limits.", now.trackedClients)
        out.histogram("websocksy_peer_connect_seconds", "Time to connect to a peer (resolution and tls:// handshake included).", peerConnect)
        out.histogram("websocksy_backend_query_seconds", "Time a backend took to choose a peer.", backendQuery)
        return out.text
    }
}
