/// Time-driven work, run from the server's periodic sweep: deadlines, keepalive, idle memory.
extension Connection {
    func sweep(now: Int64) {
        switch state {
        case .handshake, .responding:
            if deadline != 0 && now >= deadline {
                if state == .handshake { handshakeTimedOut() }
                destroy()
                return
            }
            // Between kept-alive requests the buffers go back (they are reallocated on the next read).
            if state == .handshake { client.releaseIdleBuffers() }
        case .authenticating:
            if now >= deadline {
                refuse(.init(.serviceUnavailable, "the password check did not finish within \(server.limits.backendTimeoutMilliseconds / 1000) s"))
            }
        case .queryingBackend:
            if now >= deadline {
                refuse(.init(.gatewayTimeout, "the backend did not answer within \(server.limits.backendTimeoutMilliseconds / 1000) s"))
            }
        case .connectingPeer:
            if now >= deadline { return peerConnectTimedOut() }
            connector?.retryIfDue(now: now)
        case .open:
            bridge?.sweep(now: now)
        case .closed:
            return
        }
    }
}

private extension Connection {
    /// Part of a request (or of a TLS handshake) and then nothing is a stalled or slowloris client:
    /// one info line. Nothing at all is a browser's preconnect left idle: counted when it retires,
    /// logged at debug. So is a kept-alive connection that asks for nothing more.
    func handshakeTimedOut() {
        if client.phase == .tlsHandshake {
            Log.info("\(clientAddress): handshake not completed in time (TLS handshake unfinished)")
            endReported = true
        } else if client.inbox.count > 0 {
            Log.info("\(clientAddress): handshake not completed in time (\(client.inbox.count) bytes of a request)")
            endReported = true
        } else if requestsServed > 0 {
            Log.debug("\(clientAddress): no further request after \(requestsServed); closing")
        } else {
            timedOutIdle = true
        }
    }
}

extension Bridge {
    func sweep(now: Int64) {
        guard !isEnded else { return }
        if let exit = programExit, now - exit.at >= 200 { closeForProgram(exit.status) }
        if closeDeadline != 0 && now >= closeDeadline {
            Log.debug("\(clientAddress): no close frame from the client in time")
            abort()
            return
        }
        if !session.closeSent {
            let idle = server.limits.idleTimeoutMilliseconds
            if idle > 0 && now - lastData >= idle {
                Log.debug("\(clientAddress): idle for \(idle / 1000) s; closing")
                initiateClose(.goingAway, reason: "idle timeout")
                return
            }
            keepalive(now: now)
            guard !isEnded else { return }
        }
        if now - lastReceive >= 1000 {
            // Idle: give the buffers back (they are reallocated on the next read or write).
            client.releaseIdleBuffers()
        }
        // The peer's too, or its 64 KiB read buffer stays with the connection for its whole life.
        if now - lastData >= 1000, case .stream(let endpoint) = peer { endpoint.releaseIdleBuffers() }
    }

    /// Pings a silent client every interval; one that stays silent for another interval is closed.
    /// While reading from the client is paused its silence is ours — it cannot even send its pong
    /// — so it is judged instead by whether it takes what is queued for it.
    private func keepalive(now: Int64) {
        let interval = server.limits.pingIntervalMilliseconds
        guard interval > 0 else { return }
        if client.isReadPaused {
            lastReceive = now
            pingSentAt = nil
            if client.lastWriteProgress != 0 && now - client.lastWriteProgress >= 2 * interval {
                Log.info("\(clientAddress): took nothing of what is queued for it in \(2 * interval / 1000) s; closing")
                abort()
            }
            return
        }
        if let sentAt = pingSentAt {
            if now - sentAt >= interval {
                Log.info("\(clientAddress): no answer to the keepalive ping; closing")
                failConnection(.goingAway, reason: "keepalive timeout")
            }
        } else if now - lastReceive >= interval {
            sendFrame(.ping, UnsafeRawBufferPointer(start: nil, count: 0))
            pingSentAt = now
        }
    }
}
