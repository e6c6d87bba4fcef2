/// wsgw's text mode for a stream peer that speaks lines: each client message reaches the peer
/// ending with the line end (appended unless the message already ends with it), and each line from
/// the peer — cut by the `newline` framing with the same line end — reaches the client without it.
/// Client messages are streamed to the peer chunk by chunk, so only their last bytes are kept here.
struct LineMode {
    /// The line end, one or two bytes (`SeparatorSpec.newline`).
    let end: [UInt8]
    /// The last two bytes of the client message so far (older first) and how many of them exist.
    private var last: (UInt8, UInt8) = (0, 0)
    private var known = 0

    init(end: [UInt8]) {
        precondition((1...2).contains(end.count), "a line end is one or two bytes")
        self.end = end
    }

    /// Notes a chunk of a client message on its way to the peer.
    mutating func observe(_ chunk: UnsafeRawBufferPointer, messageStart: Bool) {
        if messageStart { known = 0 }
        for byte in chunk.suffix(2) {
            last = (last.1, byte)
            known = min(known + 1, 2)
        }
    }

    /// Whether the message observed so far does not end with the line end (so it must be added).
    var messageLacksEnd: Bool {
        guard known >= end.count else { return true }
        return end.count == 1 ? last.1 != end[0] : (last.0, last.1) != (end[0], end[1])
    }

    /// A line from the peer without its line end (the last line at close may have none).
    func stripped(_ line: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard line.count >= end.count, line.suffix(end.count).elementsEqual(end) else { return line }
        return UnsafeRawBufferPointer(rebasing: line[0..<(line.count - end.count)])
    }
}
