/// permessage-deflate (RFC 7692) for one connection: the agreed parameters and the zlib state
/// they oblige us to keep. A window kept between messages (context takeover) is a stream owned
/// here for the life of the connection, created with the first message that needs it; without
/// context takeover the stream is the pool's, lent for one message (inflate) or shared (deflate).
public final class PerMessageDeflate {
    public let parameters: DeflateParameters
    let pool: CompressionPool
    /// Shorter messages are sent uncompressed.
    let minimumSize: Int
    private var ownInflater: Inflater?
    private var lentInflater: Inflater?
    private var ownDeflater: Deflater?

    // The client message being inflated (see `WebSocketSession+Inflate`).
    var inflating: InflateProgress?
    /// The next inflated bytes delivered start a message.
    var inflatedStartPending = false
    var inflatedLength: UInt64 = 0
    var inflatedUTF8 = UTF8Validator()

    /// The empty stored block a sender removes from the end of each message (§7.2.1), appended
    /// again before inflating the message's end (§7.2.2).
    static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

    public init(parameters: DeflateParameters, pool: CompressionPool, minimumSize: Int = 0) {
        self.parameters = parameters
        self.pool = pool
        self.minimumSize = minimumSize
    }

    deinit {
        if let lentInflater { pool.returnInflater(lentInflater) }
    }

    // MARK: Receiving

    /// The inflater for the client message in progress; nil when zlib cannot allocate one.
    func messageInflater() -> Inflater? {
        if parameters.clientNoContextTakeover {
            if lentInflater == nil { lentInflater = pool.lendInflater() }
            return lentInflater
        }
        if ownInflater == nil {
            // A window one size up from 8 bits: zlib's own compressors use 9 when asked for 8.
            ownInflater = Inflater(windowBits: max(9, parameters.clientWindowBits))
        }
        return ownInflater
    }

    /// The client message ended (or failed): without context takeover its window is forgotten.
    func endMessage(streamEnded: Bool) {
        inflating = nil
        if let lentInflater {
            pool.returnInflater(lentInflater)
            self.lentInflater = nil
        } else if streamEnded {
            // A final block ended the DEFLATE stream and zlib reads nothing after it: the next
            // message starts a new stream, which may still refer back into the window.
            ownInflater?.restartKeepingWindow()
        }
    }

    /// The connection ends in the middle of a message.
    func abandonMessage() {
        if inflating != nil { endMessage(streamEnded: false) }
    }

    // MARK: Sending

    /// Compresses one message into frames (§7.2.1): the first carries RSV1 and the opcode, the
    /// last FIN; each is at most the pool's chunk size. Returns false, having emitted nothing,
    /// when the message is to go uncompressed: empty, shorter than the minimum size, or — without
    /// context takeover — not made smaller by compressing (judged on its first frame's worth).
    func compress(_ payload: UnsafeRawBufferPointer,
                  emit: (_ chunk: UnsafeRawBufferPointer, _ first: Bool, _ last: Bool) -> Void) -> Bool {
        // An empty message gains nothing (and zlib emits nothing for a flush with no new input).
        guard payload.count > 0, payload.count >= minimumSize, payload.count <= Int(UInt32.max) else { return false }
        let shared = parameters.serverNoContextTakeover
        guard let deflater = shared ? pool.sharedDeflater(windowBits: parameters.serverMaxWindowBits) : ownDeflaterForUse() else {
            return false
        }
        let out = pool.deflateOutput
        var carried = 0
        var first = true
        deflater.begin(payload)
        while true {
            let (produced, held, inputLeft, complete) = deflater.flush(into: UnsafeMutableRawBufferPointer(rebasing: out[carried...]))
            let filled = carried + produced
            if shared && first && filled + held - 4 >= payload.count - inputLeft {
                deflater.reset()
                return false
            }
            // The flush ends with 00 00 ff ff, which is not sent: hold the last four bytes back
            // until it is known whether they are that end.
            if complete {
                emit(UnsafeRawBufferPointer(rebasing: out[0..<(filled - 4)]), first, true)
                break
            }
            emit(UnsafeRawBufferPointer(rebasing: out[0..<(filled - 4)]), first, false)
            first = false
            out.baseAddress!.copyMemory(from: out.baseAddress! + (filled - 4), byteCount: 4)
            carried = 4
        }
        if shared { deflater.reset() }
        return true
    }

    private func ownDeflaterForUse() -> Deflater? {
        if ownDeflater == nil {
            let bits = parameters.serverMaxWindowBits
            ownDeflater = Deflater(level: pool.settings.level, windowBits: bits, memoryLevel: pool.settings.memoryLevel(bits))
        }
        return ownDeflater
    }
}
