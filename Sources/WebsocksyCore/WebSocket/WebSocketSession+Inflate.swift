/// Receiving compressed messages (RFC 7692 §7.2.2): each chunk of a compressed message's payload is
/// inflated in bounded steps into the pool's output buffer and handed out as ordinary `.deliver`
/// actions, so the caller's backpressure applies to inflated bytes like any others.
///
/// A chunk that inflates to more than one output buffer is worked through over several calls:
/// until its last step, `next` reports 0 bytes consumed, so the compressed bytes stay where they
/// are in the caller's buffer (which may move them, but keeps them first) and are found again by
/// their offset.
struct InflateProgress {
    /// Where the rest of the chunk lies in the caller's input, and how long it is.
    var offset: Int
    var remaining: Int
    /// What to report consumed once the chunk is done (its frame header included).
    var consumed: Int
    var opcode: Opcode
    var messageEnd: Bool
    /// Bytes of the 00 00 ff ff tail inflated so far (at the message's end).
    var tailUsed = 0
    /// A final block ended the DEFLATE stream: the rest of the message is ignored (§7.2.3.4 shows
    /// such a message with a byte after its end).
    var streamEnded = false
}

extension WebSocketSession {
    mutating func startInflating(_ payload: UnsafeMutableRawBufferPointer, in input: UnsafeMutableRawBufferPointer,
                                 consumed: Int, opcode: Opcode, messageStart: Bool, messageEnd: Bool) -> (consumed: Int, action: Action) {
        let state = compression!
        if messageStart {
            state.inflatedStartPending = true
            state.inflatedLength = 0
            state.inflatedUTF8.reset()
        }
        let offset = payload.baseAddress.map { $0 - input.baseAddress! } ?? consumed
        state.inflating = InflateProgress(offset: offset, remaining: payload.count, consumed: consumed, opcode: opcode, messageEnd: messageEnd)
        return inflateStep(input)
    }

    /// Inflates the chunk in progress until the output buffer is full or the chunk is used up.
    mutating func inflateStep(_ input: UnsafeMutableRawBufferPointer) -> (consumed: Int, action: Action) {
        guard let compression, var progress = compression.inflating else { return (0, .needMore) }
        guard let inflater = compression.messageInflater() else {
            return inflateFailure(.internalError, "out of memory for a decompressor", consumed: progress.consumed)
        }
        let output = compression.pool.inflateOutput
        // One byte beyond the limit is enough to know the message is too big.
        let allowed = reader.maxMessageSize - min(compression.inflatedLength, reader.maxMessageSize)
        let room = Int(min(UInt64(output.count), allowed + 1))
        var produced = 0
        var drained = false
        while produced < room {
            // The frame's bytes, then (at the message's end) the tail, then nothing: zlib may
            // still hold output from input it has taken.
            let space = UnsafeMutableRawBufferPointer(rebasing: output[produced..<room])
            let fromTail = progress.remaining == 0
            let step = if !fromTail {
                inflater.inflate(UnsafeRawBufferPointer(rebasing: input[progress.offset..<(progress.offset + progress.remaining)]), into: space)
            } else if progress.messageEnd && progress.tailUsed < 4 && !progress.streamEnded {
                PerMessageDeflate.tail.withUnsafeBytes { inflater.inflate(UnsafeRawBufferPointer(rebasing: $0[progress.tailUsed...]), into: space) }
            } else {
                inflater.inflate(UnsafeRawBufferPointer(start: nil, count: 0), into: space)
            }
            produced += step.produced
            if fromTail { progress.tailUsed += step.consumed } else {
                progress.offset += step.consumed
                progress.remaining -= step.consumed
            }
            switch step.status {
            case .progress: break
            case .streamEnd:
                progress.streamEnded = true
                progress.offset += progress.remaining
                progress.remaining = 0
            case .dataError(let why):
                let code: CloseCode = progress.opcode == .text ? .invalidPayload : .protocolError
                return inflateFailure(code, "undecodable compressed data (\(why))", consumed: progress.consumed)
            }
            let inputUsed = progress.remaining == 0 && (!progress.messageEnd || progress.tailUsed == 4 || progress.streamEnded)
            // Output room left after a call means zlib has given all it can from this input.
            if inputUsed && produced < room { drained = true; break }
            if step.consumed == 0 && step.produced == 0 {
                guard inputUsed else {
                    return inflateFailure(.protocolError, "compressed data that does not decode", consumed: progress.consumed)
                }
                drained = true
                break
            }
        }
        compression.inflatedLength += UInt64(produced)
        if compression.inflatedLength > reader.maxMessageSize {
            return inflateFailure(.messageTooBig, "message exceeds \(reader.maxMessageSize) bytes once decompressed", consumed: progress.consumed)
        }
        let chunk = UnsafeMutableRawBufferPointer(rebasing: output[0..<produced])
        let messageEnd = drained && progress.messageEnd
        if progress.opcode == .text {
            guard compression.inflatedUTF8.validate(UnsafeRawBufferPointer(chunk)) else {
                return inflateFailure(.invalidPayload, "invalid UTF-8 in a text message", consumed: progress.consumed)
            }
            if messageEnd && !compression.inflatedUTF8.isComplete {
                return inflateFailure(.invalidPayload, "text message ends inside a UTF-8 sequence", consumed: progress.consumed)
            }
        }
        let consumed: Int
        if drained {
            compression.inflating = nil
            consumed = progress.consumed
            if messageEnd { compression.endMessage(streamEnded: progress.streamEnded) }
            if produced == 0 && !messageEnd { return (consumed, .none) }
        } else {
            compression.inflating = progress
            consumed = 0
        }
        let start = compression.inflatedStartPending
        compression.inflatedStartPending = false
        return (consumed, .deliver(chunk, opcode: progress.opcode, messageStart: start, messageEnd: messageEnd))
    }

    /// The message cannot be inflated: its decompressor goes back, and the connection fails.
    private mutating func inflateFailure(_ code: CloseCode, _ why: String, consumed: Int) -> (consumed: Int, action: Action) {
        compression?.endMessage(streamEnded: false)
        return (consumed, failure(code, why))
    }
}
