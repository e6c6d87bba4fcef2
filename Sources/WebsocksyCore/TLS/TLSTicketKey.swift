import CGnuTLS
import Glibc

/// The key session tickets are sealed with (RFC 5077, RFC 8446 §4.6.1): a client that comes back
/// presents its ticket and resumes without a certificate signature or key exchange of the
/// certificate's kind — what makes a full handshake cost (an RSA-2048 signature is most of it).
///
/// GnuTLS takes it as a master key and derives the key actually used from it and the time, a new
/// one every ticket lifetime, so tickets expire and older traffic keys cannot be recovered from a
/// later key. Random per process by default; instances behind one balancer share a key file
/// (`tls-ticket-key`) so a client resumes on whichever instance it reaches.
final class TLSTicketKey {
    /// GnuTLS's master key size (what `gnutls_session_ticket_key_generate` makes).
    static let size = 64
    private var datum: gnutls_datum_t
    private let bytes = UnsafeMutableRawPointer.allocate(byteCount: TLSTicketKey.size, alignment: 16)

    /// The random key of this process, and of the workers it forks: `Supervisor` makes it before
    /// forking, so a client resumes on whichever worker the kernel hands its connection to.
    nonisolated(unsafe) static let processKey: TLSTicketKey? = try? TLSTicketKey()

    /// A random key.
    private init() throws(TLSError) {
        datum = gnutls_datum_t(data: bytes.assumingMemoryBound(to: UInt8.self), size: UInt32(Self.size))
        let rc = gnutls_rnd(GNUTLS_RND_KEY, bytes, Self.size)
        guard rc >= 0 else { throw TLSError("cannot make a session ticket key: \(TLSError.text(rc))") }
    }

    /// The key in `path`: exactly 64 bytes, e.g. `head -c 64 /dev/urandom > FILE`.
    init(file path: String) throws(TLSError) {
        datum = gnutls_datum_t(data: bytes.assumingMemoryBound(to: UInt8.self), size: UInt32(Self.size))
        // Non-blocking: a FIFO must not hang start-up or a reload.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw TLSError("\(path) is not a regular file") }
        var extra: UInt8 = 0
        let n = read(fd, bytes, Self.size)
        guard n >= 0 else { throw TLSError("cannot read \(path): \(String(cString: strerror(errno)))") }
        guard n == Self.size, read(fd, &extra, 1) == 0 else {
            throw TLSError("\(path): a session ticket key is \(Self.size) bytes (head -c \(Self.size) /dev/urandom > FILE); this file has \(n == Self.size ? "more" : String(n))")
        }
    }

    deinit {
        // Wiped before it is freed: whoever reads freed memory must not find it.
        gnutls_memset(bytes, 0, Self.size)
        bytes.deallocate()
    }

    /// Lets `session` issue tickets under this key and resume the sessions of tickets it sealed.
    func enable(on session: gnutls_session_t) {
        _ = gnutls_session_ticket_enable_server(session, &datum)
    }
}
