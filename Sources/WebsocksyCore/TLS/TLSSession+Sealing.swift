import CGnuTLS
import Glibc

/// Writing through TLS: plaintext sealed into records straight from the caller's buffers, a batch
/// of records per send (see `TLSSocket`).
extension TLSSession {
    /// Plaintext of one record at most.
    static let maxRecord = 16384

    /// Plaintext sealed per send at most: a 64 KiB frame and its header leave in one syscall.
    static let sealBatch = 128 << 10

    /// One record's plaintext gathered from two buffers (the loop is single-threaded).
    nonisolated(unsafe) private static let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: maxRecord, alignment: 16)

    /// Seals records from the front of `first` then `second` (a frame header and its payload, or
    /// queued bytes and nothing) up to `sealBatch`, and sends them; what the socket does not take
    /// is kept and leaves first with `sendUnsent`. `.bytes(n)`: the first n bytes are GnuTLS's now
    /// (sent or kept). Call only once `sendUnsent` has emptied the backlog.
    func seal(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) -> IOResult {
        let total = first.count + second.count
        var offset = 0
        while offset < total && offset < Self.sealBatch {
            let record = Self.nextRecord(first, second, at: offset)
            // After EAGAIN GnuTLS wants the same call again: the same bytes, wherever they are now.
            let length = pendingWrite > 0 ? min(pendingWrite, record.count) : record.count
            let n = gnutls_record_send(session, record.baseAddress, length)
            if n >= 0 {
                pendingWrite = 0
                offset += n
                continue
            }
            let code = Int32(n)
            if code == cgnutls_e_again() || code == cgnutls_e_interrupted() {
                pendingWrite = length
                break
            }
            if gnutls_error_is_fatal(code) == 0 { continue }
            TLSSocket.discardSealed()
            return .failed(.tls(TLSError.text(code)))
        }
        if socket.transmit().failed { return .failed(.tls(Self.pushFailure)) }
        return offset > 0 ? .bytes(offset) : .wouldBlock
    }

    /// The plaintext of the record starting `offset` bytes into `first` ++ `second`: sealed where
    /// it is, except a record spanning both (a frame header and the start of its payload), which
    /// is gathered into one record rather than sealing the header as a record of its own.
    private static func nextRecord(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, at offset: Int) -> UnsafeRawBufferPointer {
        guard offset < first.count else {
            let start = offset - first.count
            return UnsafeRawBufferPointer(rebasing: second[start..<min(second.count, start + maxRecord)])
        }
        let head = first.count - offset
        guard head < maxRecord && second.count > 0 else {
            return UnsafeRawBufferPointer(rebasing: first[offset..<(offset + min(head, maxRecord))])
        }
        let tail = min(second.count, maxRecord - head)
        staging.baseAddress!.copyMemory(from: first.baseAddress! + offset, byteCount: head)
        (staging.baseAddress! + head).copyMemory(from: second.baseAddress!, byteCount: tail)
        return UnsafeRawBufferPointer(rebasing: staging[0..<(head + tail)])
    }
}
