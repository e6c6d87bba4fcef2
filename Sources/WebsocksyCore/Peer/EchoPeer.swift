/// The built-in `echo://` peer: sends every message back with its opcode unchanged. A message that
/// arrives in one piece is answered straight from the read buffer; a fragmented one is assembled
/// first (bounded by the maximum message size), since the answer is one frame.
struct EchoPeer: ~Copyable {
    private var message = ByteBuffer()

    /// Takes a chunk of a client message; returns the whole message once it is complete. The
    /// returned bytes stay valid until the next call; call `messageSent()` after sending them.
    mutating func receive(_ payload: UnsafeRawBufferPointer, messageStart: Bool, messageEnd: Bool) -> UnsafeRawBufferPointer? {
        if messageStart && messageEnd && message.isEmpty { return payload }
        message.append(payload)
        return messageEnd ? UnsafeRawBufferPointer(message.readable) : nil
    }

    mutating func messageSent() {
        message.removeAll()
        message.releaseIfEmpty()
    }
}
