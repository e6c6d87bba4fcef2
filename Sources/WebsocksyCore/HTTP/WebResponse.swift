import Glibc

/// An answer to a plain HTTP request: the status line and header fields, then a small body held in
/// memory or a file streamed from disk. The `Connection` field and the blank line are the
/// connection's to add, since only it knows whether it stays open.
public struct WebResponse {
    public var status: Int
    /// Status line and header fields, each ending in CRLF, without the blank line.
    public var head: String
    public var body: [UInt8] = []
    /// The body, streamed: the file is never read into memory as a whole.
    var file: FileBody?
}

/// The open file behind a response body and how far it has been sent. The descriptor closes with it.
final class FileBody {
    let fd: Int32
    var offset: Int
    let end: Int

    init(fd: Int32, length: Int) {
        self.fd = fd
        self.offset = 0
        self.end = length
    }

    deinit { close(fd) }

    var remaining: Int { end - offset }
}
