import CWebsocksy

/// `-b token`: the peer comes from the verified token's claims — address, framing, subprotocol —
/// and must be inside the allow-list. Needs `auth-keys` or `auth-secret` (checked at start-up):
/// without verified claims there is nothing to route by.
public final class TokenBackend: Backend {
    public static let name = "token"

    private var allowList = PeerAllowList()
    private var peerClaim = "peer"
    private var framingClaim = "framing"
    private var framingConfigClaim = "framing-config"
    private var protocolClaim = "protocol"
    private var defaultFraming = "auto"

    public init() {}

    public func configure(key: String, value: String) throws(BackendError) {
        func claimName() throws(BackendError) -> String {
            guard !value.isEmpty else { throw BackendError("\(key) needs a claim name") }
            return value
        }
        switch key {
        case "allow":
            for item in value.split(separator: ",") { try allowList.add(String(item.trimmingHTTPWhitespace)) }
        case "peer-claim": peerClaim = try claimName()
        case "framing-claim": framingClaim = try claimName()
        case "framing-config-claim": framingConfigClaim = try claimName()
        case "protocol-claim": protocolClaim = try claimName()
        case "framing": defaultFraming = value
        default:
            throw BackendError("unknown option '\(key)' (known: allow, peer-claim, framing-claim, framing-config-claim, protocol-claim, framing)")
        }
    }

    public func validate() throws(BackendError) {
        guard !allowList.entries.isEmpty else {
            throw BackendError("no allow entries: list the peers tokens may name, e.g. -c allow=tcp://10.0.0.0/8:5900-5999 or -c allow=unix:///run/vnc/")
        }
        guard FramingRegistry.lookup(defaultFraming) != nil else {
            throw BackendError("unknown framing '\(defaultFraming)' (known: \(FramingRegistry.names.joined(separator: ", ")))")
        }
    }

    public func query(_ request: HandshakeRequest) -> BackendAnswer {
        guard let text = request.claims[peerClaim]?.string else {
            return .refuse(.init(.forbidden, "token has no \(peerClaim) claim naming a peer"))
        }
        let address: PeerAddress
        do throws(PeerAddressError) {
            address = try PeerAddress.parse(text)
            guard text.contains("://") else { throw PeerAddressError("no scheme") }
        } catch {
            return .refuse(.init(.forbidden, "token's \(peerClaim) claim is not a peer address: \(error)"))
        }
        var addressCheck: (([UInt8]) -> Bool)?
        switch allowList.decide(address) {
        case .refused(let why): return .refuse(.init(.forbidden, "token's peer refused: \(why)"))
        case .allowed: break
        case .allowedIfResolvedInside(let check): addressCheck = check
        }
        let framingName = request.claims[framingClaim]?.scalarText ?? defaultFraming
        guard let framing = FramingRegistry.lookup(framingName) else {
            return .refuse(.init(.forbidden, "token names an unknown framing '\(LogText.capped(framingName, to: 32))'"))
        }
        let configText = request.claims[framingConfigClaim]?.scalarText
        do throws(FramingConfigError) {
            try FramingRegistry.validate(name: framingName, config: configText)
        } catch {
            return .refuse(.init(.forbidden, "token's framing configuration is refused: \(error)"))
        }
        var subprotocol = request.protocols.first
        if let wanted = request.claims[protocolClaim]?.string {
            guard let offered = request.protocols.first(where: { $0.asciiCaseInsensitiveEquals(wanted) }) else {
                return .refuse(.init(.badRequest, "the token's subprotocol \(LogText.capped(wanted, to: 64)) was not offered"))
            }
            subprotocol = offered
        }
        var choice = PeerChoice(address: address, subprotocol: subprotocol, framing: framing, framingConfig: configText.map { FramingConfig($0) })
        choice.addressCheck = addressCheck
        return .peer(choice)
    }
}
