/// A client message that must go on whole: the echo answers with one frame, a datagram peer gets
/// one datagram. A message that arrives in one piece is passed straight from the read buffer; a
/// fragmented one is assembled here (bounded by the maximum message size and the process-wide
/// buffer budget, which the bridge accounts).
struct MessageAssembler: ~Copyable {
    private var message = ByteBuffer()

    /// Bytes held for a message in progress.
    var count: Int { message.count }

    /// Takes a chunk of a client message; returns the whole message once it is complete. The
    /// returned bytes stay valid until the next call; call `reset()` after using them.
    mutating func receive(_ payload: UnsafeRawBufferPointer, messageStart: Bool, messageEnd: Bool) -> UnsafeRawBufferPointer? {
        if messageStart && messageEnd && message.isEmpty { return payload }
        message.append(payload)
        return messageEnd ? UnsafeRawBufferPointer(message.readable) : nil
    }

    /// Drops the message and frees its memory; returns how many bytes were held.
    mutating func reset() -> Int {
        let held = message.count
        message.removeAll()
        message.releaseIfEmpty()
        return held
    }
}
