import Glibc
import CWebsocksy

/// All framing functions by name: the built-ins, then whatever plugins register. Built-ins and plugins
/// share the C signature `ws_framing`, so one registry and one call path serve both.
public enum FramingRegistry {
    nonisolated(unsafe) private static var functions: [String: ws_framing] = [
        "auto": BuiltinFraming.auto,
        "binary": BuiltinFraming.binary,
        "separator": BuiltinFraming.separator,
        "newline": BuiltinFraming.newline,
        "mqtt": BuiltinFraming.mqtt,
    ]

    /// Registers `function` as `name`; returns true when it replaced an earlier registration.
    @discardableResult
    public static func register(_ name: String, _ function: ws_framing) -> Bool {
        functions.updateValue(function, forKey: name) != nil
    }

    /// The function registered as `name`; `auto` for nil; nil for an unknown name.
    public static func lookup(_ name: String?) -> ws_framing? {
        functions[name ?? "auto"]
    }

    public static var names: [String] { functions.keys.sorted() }

    /// The name `function` is registered under, for log lines; nil for a function a backend plugin
    /// returned without registering it.
    static func name(of function: ws_framing) -> String? {
        let wanted = BuiltinFraming.address(of: function)
        return functions.first { BuiltinFraming.address(of: $0.value) == wanted }?.key
    }

    /// Checks a built-in's configuration string at start-up, so a typo is a start-up error and not a
    /// failure on every connection.
    public static func validate(name: String, config: String?) throws(FramingConfigError) {
        switch name {
        case "separator": _ = try SeparatorSpec.parse(config ?? "")
        case "newline": _ = try SeparatorSpec.newline(config)
        default: break
        }
    }
}

public struct FramingConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// A framing configuration string kept as a C string for the lifetime of the peers that use it.
public final class FramingConfig: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<CChar>

    public init(_ text: String) {
        pointer = strdup(text)
    }

    /// Takes ownership of a malloc'd string (as returned by a backend plugin).
    public init(adopting pointer: UnsafeMutablePointer<CChar>) {
        self.pointer = pointer
    }

    deinit { free(pointer) }

    public var string: String { String(cString: pointer) }
}
