/// TLS settings for the listener and for `tls://` peers, built from the configuration at start-up.
final class TLSContext {
    /// Server side; nil when no certificate is configured (plain WebSocket only).
    private(set) var serverCredentials: TLSCredentials?
    let serverPriority: TLSPriority?
    let tlsOnly: Bool
    let verifyClient: Bool
    /// Nil when session tickets are off.
    private(set) var ticketKey: TLSTicketKey?
    private let settings: Configuration.TLSSettings

    /// Client side, for `tls://` peers: made on first use when it is the system trust store.
    private var peerCredentials: TLSCredentials?
    let peerPriority: TLSPriority
    let verifyPeers: Bool

    init(_ settings: Configuration.TLSSettings) throws(ConfigError) {
        self.settings = settings
        tlsOnly = settings.only
        verifyClient = settings.verifyClient
        verifyPeers = settings.peerVerify
        if settings.key != nil && settings.certificate == nil { throw ConfigError("tls-key", "is set but tls-cert is not") }
        if settings.only && settings.certificate == nil { throw ConfigError("tls-only", "needs tls-cert (and tls-key)") }
        if settings.verifyClient && settings.ca == nil { throw ConfigError("tls-verify-client", "needs tls-ca, the CA that signs client certificates") }
        if settings.ticketKey != nil && settings.certificate == nil { throw ConfigError("tls-ticket-key", "is set but tls-cert is not") }
        if settings.ticketKey != nil && !settings.tickets { throw ConfigError("tls-ticket-key", "is set but tls-tickets = no") }
        if settings.ticketKey != nil && settings.verifyClient {
            throw ConfigError("tls-ticket-key", "cannot be combined with tls-verify-client: a resumed session skips the client certificate check, so no tickets are issued")
        }
        do throws(TLSError) {
            serverPriority = try settings.certificate.map { _ throws(TLSError) in try TLSPriority(settings.priority) }
        } catch {
            throw ConfigError("tls-priority", error.description)
        }
        do throws(TLSError) {
            peerPriority = try TLSPriority(TLSPriority.defaultString)
            if let certificate = settings.certificate {
                serverCredentials = try TLSCredentials.server(certificate: certificate, key: settings.key, ca: settings.ca)
            }
        } catch {
            throw ConfigError(settings.certificate ?? "tls-cert", error.description)
        }
        if settings.issuesTickets {
            do throws(TLSError) {
                if let file = settings.ticketKey {
                    ticketKey = try TLSTicketKey(file: file)
                } else {
                    guard let key = TLSTicketKey.processKey else { throw TLSError("cannot make a session ticket key") }
                    ticketKey = key
                }
            } catch {
                throw ConfigError("tls-ticket-key", error.description)
            }
        }
        if let ca = settings.peerCA {
            do throws(TLSError) {
                peerCredentials = try TLSCredentials.client(ca: ca)
            } catch {
                throw ConfigError("peer-tls-ca", error.description)
            }
        }
        if !verifyPeers { Log.warning("peer-tls-verify = no: certificates of tls:// peers are not checked") }
    }

    /// SIGHUP: load the certificate and key again for new connections; keep the old ones on failure.
    func reload() {
        guard let certificate = settings.certificate else { return }
        do throws(TLSError) {
            serverCredentials = try TLSCredentials.server(certificate: certificate, key: settings.key, ca: settings.ca)
            Log.info("reloaded TLS certificate \(certificate)")
        } catch {
            Log.error("TLS reload failed, keeping the previous certificate: \(error)")
        }
        guard let file = settings.ticketKey else { return }
        do throws(TLSError) {
            ticketKey = try TLSTicketKey(file: file)
            Log.info("reloaded the session ticket key \(file)")
        } catch {
            Log.error("session ticket key reload failed, keeping the previous key: \(error)")
        }
    }

    func peerCredentialsForUse() throws(TLSError) -> TLSCredentials {
        if let peerCredentials { return peerCredentials }
        let made = try TLSCredentials.client(ca: nil)
        peerCredentials = made
        return made
    }
}
