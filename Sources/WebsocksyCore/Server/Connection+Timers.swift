/// Time-driven work, run from the server's periodic sweep: deadlines, keepalive, idle memory.
extension Connection {
    func sweep(now: Int64) {
        if deadline != 0 && now >= deadline {
            switch state {
            case .handshake, .tlsHandshake:
                Log.info("\(clientAddress): handshake not completed in time")
            case .closing:
                Log.debug("\(clientAddress): no close frame from the client in time")
            default:
                break
            }
            destroy()
            return
        }
        if state == .connectingPeer, let peer = peerSocket, peer.deadline != 0, now >= peer.deadline {
            peer.close()
            peerSocket = nil
            refuse(.init(.badGateway, "peer unreachable: no connection to \(peer.address) within \(server.limits.connectTimeoutMilliseconds / 1000) s"))
            return
        }
        if state == .open {
            let idle = server.limits.idleTimeoutMilliseconds
            if idle > 0 && now - lastData >= idle {
                Log.debug("\(clientAddress): idle for \(idle / 1000) s; closing")
                initiateClose(.goingAway, reason: "idle timeout")
                return
            }
            keepalive(now: now)
        }
        if now - lastReceive >= 1000 {
            // Idle: give the buffers back (they are reallocated on the next read or write).
            inbox.releaseIfEmpty()
            outbox.releaseIfEmpty()
        }
    }

    /// Pings a silent client every interval; one that stays silent for another interval is closed.
    private func keepalive(now: Int64) {
        let interval = server.limits.pingIntervalMilliseconds
        guard interval > 0 else { return }
        if let sentAt = pingSentAt {
            if now - sentAt >= interval {
                Log.info("\(clientAddress): no answer to the keepalive ping; closing")
                sendClose(.goingAway, reason: "keepalive timeout")
                startDraining()
            }
        } else if now - lastReceive >= interval {
            sendFrame(.ping, UnsafeRawBufferPointer(start: nil, count: 0))
            pingSentAt = now
        }
    }
}
