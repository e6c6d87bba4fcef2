import CGnuTLS
import CNettle

/// The product version and the versions of the libraries it runs with, printed by `--version`.
public enum Version {
    public static let string = "0.1.0"

    public static var libraries: String {
        let gnutls = gnutls_check_version(nil).map { String(cString: $0) } ?? "?"
        return "GnuTLS \(gnutls), Nettle \(nettle_version_major()).\(nettle_version_minor())"
    }
}
