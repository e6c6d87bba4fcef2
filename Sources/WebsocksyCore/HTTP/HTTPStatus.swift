/// The HTTP statuses the gateway answers with before (or instead of) the upgrade.
public enum HTTPStatus: Int, Sendable {
    case switchingProtocols = 101
    case badRequest = 400
    case unauthorized = 401
    case forbidden = 403
    case notFound = 404
    case upgradeRequired = 426
    case tooManyRequests = 429
    case requestHeaderFieldsTooLarge = 431
    case internalServerError = 500
    case badGateway = 502
    case serviceUnavailable = 503
    case gatewayTimeout = 504

    public var reasonPhrase: String {
        switch self {
        case .switchingProtocols: "Switching Protocols"
        case .badRequest: "Bad Request"
        case .unauthorized: "Unauthorized"
        case .forbidden: "Forbidden"
        case .notFound: "Not Found"
        case .upgradeRequired: "Upgrade Required"
        case .tooManyRequests: "Too Many Requests"
        case .requestHeaderFieldsTooLarge: "Request Header Fields Too Large"
        case .internalServerError: "Internal Server Error"
        case .badGateway: "Bad Gateway"
        case .serviceUnavailable: "Service Unavailable"
        case .gatewayTimeout: "Gateway Timeout"
        }
    }
}
