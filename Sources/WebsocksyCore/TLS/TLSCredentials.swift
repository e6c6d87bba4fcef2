import CGnuTLS
import Glibc

/// A GnuTLS certificate credential. Sessions hold a reference: GnuTLS requires the credential to
/// outlive every session using it, and a reload (SIGHUP) replaces it only for new connections.
final class TLSCredentials {
    let handle: gnutls_certificate_credentials_t

    private init(_ handle: gnutls_certificate_credentials_t) {
        self.handle = handle
    }

    deinit { gnutls_certificate_free_credentials(handle) }

    /// The server's certificate (with its chain) and key; `ca` (optional) verifies client certificates.
    static func server(certificate: String, key: String?, ca: String?) throws(TLSError) -> TLSCredentials {
        let credentials = try allocate()
        // The key may sit in the certificate file.
        let rc = gnutls_certificate_set_x509_key_file2(credentials.handle, certificate, key ?? certificate, GNUTLS_X509_FMT_PEM, nil, 0)
        guard rc >= 0 else {
            throw TLSError("cannot load certificate \(certificate) with key \(key ?? certificate): \(TLSError.text(rc))")
        }
        if let ca { try credentials.trust(ca) }
        return credentials
    }

    /// For connections to TLS peers: `ca` when given, otherwise the system trust store.
    static func client(ca: String?) throws(TLSError) -> TLSCredentials {
        let credentials = try allocate()
        if let ca {
            try credentials.trust(ca)
        } else {
            let rc = gnutls_certificate_set_x509_system_trust(credentials.handle)
            guard rc >= 0 else { throw TLSError("cannot load the system trust store: \(TLSError.text(rc))") }
        }
        return credentials
    }

    private func trust(_ file: String) throws(TLSError) {
        let rc = gnutls_certificate_set_x509_trust_file(handle, file, GNUTLS_X509_FMT_PEM)
        guard rc > 0 else {
            throw TLSError(rc == 0 ? "no certificate found in \(file)" : "cannot load CA file \(file): \(TLSError.text(rc))")
        }
    }

    private static func allocate() throws(TLSError) -> TLSCredentials {
        var handle: gnutls_certificate_credentials_t?
        let rc = gnutls_certificate_allocate_credentials(&handle)
        guard rc >= 0, let handle else { throw TLSError("cannot allocate TLS credentials: \(TLSError.text(rc))") }
        return TLSCredentials(handle)
    }
}

/// A parsed GnuTLS priority string (protocol versions and cipher suites).
final class TLSPriority {
    let handle: gnutls_priority_t
    /// TLS 1.2 and 1.3 only.
    static let defaultString = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

    init(_ text: String) throws(TLSError) {
        var handle: gnutls_priority_t?
        // The error position points into the C string passed in: read it while that string lives.
        let (rc, at) = text.withCString { cText in
            var errorPosition: UnsafePointer<CChar>?
            let rc = gnutls_priority_init(&handle, cText, &errorPosition)
            return (rc, errorPosition.map { " at '\(String(cString: $0))'" } ?? "")
        }
        guard rc >= 0, let handle else {
            throw TLSError("invalid priority string '\(text)'\(at): \(TLSError.text(rc))")
        }
        self.handle = handle
    }

    deinit { gnutls_priority_deinit(handle) }
}

public struct TLSError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }

    static func text(_ code: Int32) -> String {
        gnutls_strerror(code).map { String(cString: $0) } ?? "GnuTLS error \(code)"
    }
}
