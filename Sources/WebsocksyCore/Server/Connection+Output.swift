import CLinux
import Glibc

/// Bytes to the client: written straight to the socket when nothing is queued (one writev per frame),
/// queued in the outbox otherwise, with reads paused while the outbox is over its high-water mark.
extension Connection {
    /// Sends one unfragmented frame. Nothing is sent after a Close. `last`: the socket is closed or
    /// shut down right after, so the kernel may hold the frame to send it in one segment with the FIN.
    func sendFrame(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer, last: Bool = false) {
        guard !closeSent, state != .closed else { return }
        if opcode == .text || opcode == .binary {
            record.messagesOut += 1
            record.bytesOut += payload.count
        }
        var header: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &header) { h in
            let size = FrameHeader.encodeServerHeader(fin: true, opcode: opcode, length: payload.count, into: h.baseAddress!)
            send(UnsafeRawBufferPointer(rebasing: h[0..<size]), payload, flags: last ? Int32(MSG_MORE) : 0)
        }
    }

    /// Sends a Close frame (§5.5.1): the status code, then at most 123 bytes of reason. `last` as
    /// for `sendFrame`: true when nothing more is sent and the connection drains next.
    func sendClose(_ code: CloseCode, reason: String = "", last: Bool = false) {
        guard !closeSent else { return }
        if record.closeCode == nil {
            record.closeCode = code.rawValue
            if record.closedBy == nil { record.closedBy = "server" }
        }
        withUnsafeTemporaryAllocation(byteCount: 125, alignment: 1) { body in
            body[0] = UInt8(code.rawValue >> 8)
            body[1] = UInt8(code.rawValue & 0xFF)
            var length = 2
            for byte in reason.utf8.prefix(123) {
                body[length] = byte
                length += 1
            }
            sendFrame(.close, UnsafeRawBufferPointer(rebasing: body[0..<length]), last: last)
        }
        closeSent = true
    }

    /// Handshake responses and other raw bytes.
    func sendRaw(_ bytes: UnsafeRawBufferPointer) {
        send(bytes, UnsafeRawBufferPointer(start: nil, count: 0))
    }

    /// Writes `first` then `second` in one sendmsg, queueing whatever the socket does not take now.
    private func send(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, flags: Int32 = 0) {
        if tls != nil {
            // TLS encrypts from a buffer of its own anyway: queue, then write what the socket takes.
            outbox.append(first)
            outbox.append(second)
            if writeOutbox() { updateInterest() }
            return
        }
        var written = 0
        if outbox.isEmpty {
            var vectors = (
                iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
                iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count))
            while true {
                let n = withUnsafeMutablePointer(to: &vectors) {
                    $0.withMemoryRebound(to: iovec.self, capacity: 2) { iov in
                        var message = msghdr()
                        message.msg_iov = iov
                        message.msg_iovlen = second.count > 0 ? 2 : 1
                        return sendmsg(fd, &message, flags | Int32(MSG_NOSIGNAL))
                    }
                }
                if n >= 0 { written = n; break }
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                Log.debug("\(clientAddress): \(SystemError("sendmsg"))")
                destroy()
                return
            }
        }
        if written < first.count {
            outbox.append(UnsafeRawBufferPointer(rebasing: first[written...]))
            outbox.append(second)
        } else if written - first.count < second.count {
            outbox.append(UnsafeRawBufferPointer(rebasing: second[(written - first.count)...]))
        }
        if !outbox.isEmpty { updateInterest() }
    }

    /// Writes queued bytes until the socket takes no more; false when the connection was destroyed.
    /// Only writes: the caller may be in the middle of processing input.
    func writeOutbox() -> Bool {
        while !outbox.isEmpty {
            switch SocketIO.write(fd, tls, UnsafeRawBufferPointer(outbox.readable)) {
            case .bytes(let n):
                outbox.consume(n)
            case .wouldBlock:
                return true
            case .failed(let why):
                Log.debug("\(clientAddress): \(why)")
                destroy()
                return false
            }
        }
        return true
    }

    /// The socket is writable again: send what is queued, then resume what waited for it.
    func flushOutbox() {
        guard writeOutbox() else { return }
        if outbox.isEmpty {
            // A large burst grew the buffer; do not keep megabytes around for an idle connection.
            if outbox.allocatedBytes > server.limits.retainedBufferBytes { outbox.releaseIfEmpty() }
            if state == .responding {
                continueResponse()
                return
            }
            if state == .draining {
                finishDraining()
                return
            }
        }
        if outbox.count <= server.limits.outboxLowWater { peerSocket?.resumeReading() }
        resumeClientReadsIfPossible()
        updateInterest()
    }

    /// Keeps the epoll registration in line with what the connection waits for.
    func updateInterest() {
        guard state != .closed, let token else { return }
        var wanted: UInt32 = 0
        if state == .tlsHandshake {
            wanted = tlsWantsWrite ? EpollEvents.writable : EpollEvents.readable
        } else {
            if !readPaused && !clientFinished && state != .connectingPeer && state != .responding { wanted |= EpollEvents.readable }
            if !outbox.isEmpty || fileBody != nil { wanted |= EpollEvents.writable }
        }
        if wanted != interest {
            interest = wanted
            server.reactor.modify(fd, token: token, events: wanted)
        }
    }
}
