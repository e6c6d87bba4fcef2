/// How permessage-deflate is used once the client's offer is accepted (RFC 7692 §7.1): the
/// "agreed parameters" both sides hold for the life of the connection.
public struct DeflateParameters: Equatable, Sendable {
    /// We start each message we compress from an empty window (and may then send a message
    /// uncompressed when compressing did not make it smaller).
    public var serverNoContextTakeover: Bool
    /// The client starts each message from an empty window, so ours is not kept between messages.
    public var clientNoContextTakeover: Bool
    /// The window we compress with (8–15; see `Deflater` for 8).
    public var serverMaxWindowBits: Int
    /// Whether `server_max_window_bits` goes into the answer: when offered, or when below 15.
    public var announceServerWindow: Bool
    /// The window the client may use, when the answer names it (only if the offer had the parameter).
    public var clientMaxWindowBits: Int?

    /// The window a client message may refer back into.
    public var clientWindowBits: Int { clientMaxWindowBits ?? 15 }

    /// The `Sec-WebSocket-Extensions` value of the 101: exactly the parameters in force.
    public var responseHeader: String {
        var text = "permessage-deflate"
        if serverNoContextTakeover { text += "; server_no_context_takeover" }
        if clientNoContextTakeover { text += "; client_no_context_takeover" }
        if announceServerWindow { text += "; server_max_window_bits=\(serverMaxWindowBits)" }
        if let clientMaxWindowBits { text += "; client_max_window_bits=\(clientMaxWindowBits)" }
        return text
    }

    /// The first acceptable permessage-deflate offer among `offers`, adjusted to `settings`; nil when
    /// there is none (the connection then goes on uncompressed). An offer with an unknown,
    /// duplicated or invalid parameter is declined (§7.1).
    public static func negotiate(_ offers: [ExtensionOffer], settings: DeflateSettings) -> DeflateParameters? {
        for offer in offers where offer.name == "permessage-deflate" {
            if let agreed = accept(offer, settings) { return agreed }
        }
        return nil
    }

    private static func accept(_ offer: ExtensionOffer, _ settings: DeflateSettings) -> DeflateParameters? {
        var serverNoTakeover = false, clientNoTakeover = false
        var serverBits: Int?, clientBits: Int?
        var clientBitsOffered = false
        var seen: Set<String> = []
        for (name, value) in offer.parameters {
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover":
                guard value == nil else { return nil }
                serverNoTakeover = true
            case "client_no_context_takeover":
                guard value == nil else { return nil }
                clientNoTakeover = true
            case "server_max_window_bits":
                guard let bits = value.flatMap(windowBits) else { return nil }
                serverBits = bits
            case "client_max_window_bits":
                clientBitsOffered = true
                if let value {
                    guard let bits = windowBits(value) else { return nil }
                    clientBits = bits
                }
            default:
                return nil
            }
        }
        let ourServerBits = min(serverBits ?? 15, settings.serverMaxWindowBits)
        // A client that cannot be asked for a smaller window (no client_max_window_bits in its
        // offer) would have us keep a 32 KiB window per connection: it is asked instead not to
        // keep context (§7.1.1.2 lets the server add client_no_context_takeover to any answer).
        let clientWindowTooLarge = !clientBitsOffered && settings.clientMaxWindowBits < 15
        return DeflateParameters(
            serverNoContextTakeover: serverNoTakeover || !settings.serverContextTakeover,
            clientNoContextTakeover: clientNoTakeover || !settings.clientContextTakeover || clientWindowTooLarge,
            serverMaxWindowBits: ourServerBits,
            announceServerWindow: serverBits != nil || ourServerBits < 15,
            // §7.1.2.2: only when offered may the answer limit the client's window.
            clientMaxWindowBits: clientBitsOffered ? min(clientBits ?? 15, settings.clientMaxWindowBits) : nil)
    }

    /// §7.1.2: a decimal integer 8–15 without leading zeros.
    private static func windowBits(_ text: String) -> Int? {
        guard let bits = Int(text), (8...15).contains(bits), String(bits) == text else { return nil }
        return bits
    }
}

/// The gateway's side of compression, from the configuration: whether to accept an offer and the
/// limits it puts on the agreed parameters.
public struct DeflateSettings: Equatable, Sendable {
    /// Accept permessage-deflate offers at all (`compression = off` declines them).
    public var enabled = false
    /// Messages shorter than this are sent uncompressed (RSV1 clear); 0 compresses every message.
    public var minimumSize = 0
    /// zlib compression level, 1 (fastest) to 9.
    public var level = 6
    /// Keep our window between messages (better ratio on streams of small similar messages, at
    /// the cost of a deflate state per connection).
    public var serverContextTakeover = true
    /// Let the client keep its window between messages (we then keep an inflate window per connection).
    public var clientContextTakeover = true
    public var serverMaxWindowBits = 11
    public var clientMaxWindowBits = 11

    public init() {}

    /// zlib's memory level for a window: its hash table sized to the window (zlib's default of 8
    /// at 15 bits, 4 at the default 11), so a small window does not carry a large table.
    public func memoryLevel(_ windowBits: Int) -> Int { max(1, min(9, windowBits - 7)) }
}

/// `compression = off | on | SIZE`, in the configuration or a backend's answer: whether to accept
/// permessage-deflate, and the smallest message worth compressing.
public struct CompressionChoice: Equatable, Sendable {
    public var enabled: Bool
    public var minimumSize: Int

    public init(enabled: Bool, minimumSize: Int = 0) {
        self.enabled = enabled
        self.minimumSize = minimumSize
    }

    public static func parse(_ text: String) -> CompressionChoice? {
        switch text.lowercased() {
        case "off", "no": return CompressionChoice(enabled: false)
        case "on", "yes": return CompressionChoice(enabled: true)
        default:
            guard let size = ByteSize.parse(text), size <= 1 << 30 else { return nil }
            return CompressionChoice(enabled: true, minimumSize: Int(size))
        }
    }
}
