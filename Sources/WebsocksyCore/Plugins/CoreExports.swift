import CWebsocksy
import Glibc

// The core API of websocksy.h, exported from the executable (linked with --export-dynamic) so that
// plugins loaded with dlopen resolve these symbols against it.

/// Registers a framing function; a name registered twice replaces the older one (logged).
@_cdecl("core_register_framing")
public func core_register_framing(_ name: UnsafeMutablePointer<CChar>?, _ function: ws_framing?) -> Int32 {
    guard let name, let function else {
        Log.error("core_register_framing: a name and a function are required")
        return 1
    }
    let key = String(cString: name)
    if FramingRegistry.register(key, function) {
        Log.info("framing '\(key)' registered again: the newer one replaces the older")
    } else {
        Log.debug("framing '\(key)' registered")
    }
    return 0
}

/// The framing function registered as `name`, `auto` for NULL, NULL for an unknown name.
@_cdecl("core_framing")
public func core_framing(_ name: UnsafeMutablePointer<CChar>?) -> ws_framing? {
    FramingRegistry.lookup(name.map { String(cString: $0) })
}

/// Sets an option of the connection a backend's `query` is routing (its `websocket*`).
@_cdecl("core_peer_option")
public func core_peer_option(_ ws: OpaquePointer?, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?) -> Int32 {
    guard let ws, let key, let value else {
        Log.error("core_peer_option: a connection, a key and a value are required")
        return 1
    }
    let options = Unmanaged<PeerOptions>.fromOpaque(UnsafeRawPointer(ws)).takeUnretainedValue()
    let (k, v) = (String(cString: key), String(cString: value))
    if let problem = options.set(k, v) {
        PeerOptionWarnings.report(problem)
        return 1
    }
    return 0
}

/// A bad route option comes with every query of that route — from a routes file or a Redis
/// anyone may write to — so each distinct problem is logged once per 10 s. Called from the query
/// thread (and, for the built-in backend, the loop): a mutex guards the table, which is emptied
/// when it holds more than a few hundred problems (values an attacker varies).
enum PeerOptionWarnings {
    nonisolated(unsafe) private static var mutex = pthread_mutex_t()
    nonisolated(unsafe) private static var lastLogged: [String: Int64] = [:]
    static let intervalMilliseconds: Int64 = 10_000

    static func report(_ problem: String) {
        let now = MonotonicClock.nowMilliseconds()
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if let last = lastLogged[problem], now - last < intervalMilliseconds { return }
        if lastLogged.count >= 256 { lastLogged.removeAll() }
        lastLogged[problem] = now
        Log.warning("core_peer_option: \(problem)")
    }
}

/// The client's IP address for a backend's `query` (an addition to API 1; see websocksy.h).
@_cdecl("core_client_address")
public func core_client_address(_ ws: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let ws else { return nil }
    return UnsafePointer(Unmanaged<PeerOptions>.fromOpaque(UnsafeRawPointer(ws)).takeUnretainedValue().clientIP)
}

/// A claim of the client's verified token for a backend's `query` (an addition to API 1).
@_cdecl("core_claim")
public func core_claim(_ ws: OpaquePointer?, _ name: UnsafePointer<CChar>?) -> UnsafePointer<CChar>? {
    guard let ws, let name else { return nil }
    return UnsafePointer(Unmanaged<PeerOptions>.fromOpaque(UnsafeRawPointer(ws)).takeUnretainedValue().claim(String(cString: name)))
}

/// Lower-cases an ASCII string in place (websocksy exports this helper to its plugins).
@_cdecl("xstr_lower")
public func xstr_lower(_ text: UnsafeMutablePointer<CChar>?) -> UnsafeMutablePointer<CChar>? {
    guard let text else { return nil }
    var p = text
    while p.pointee != 0 {
        if p.pointee >= 0x41 && p.pointee <= 0x5A { p.pointee |= 0x20 }
        p += 1
    }
    return text
}
