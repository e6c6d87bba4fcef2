import CLinux
import Glibc

/// Where plugins are loaded from. In order: `plugins =` / `--plugins`, the `WEBSOCKSY_PLUGINS`
/// environment variable, a `plugins/` folder beside the executable (where `make` puts the plugins it
/// builds, so a checkout works without flags), and the directory chosen at build time
/// (`PREFIX/lib/websocksy`).
public enum PluginDirectory {
    public struct Choice: Equatable, Sendable {
        public var path: String
        /// Named by the user: it must exist.
        public var explicit: Bool
    }

    public static func resolve(configured: String?) -> Choice {
        if let configured { return Choice(path: configured, explicit: true) }
        if let env = getenv("WEBSOCKSY_PLUGINS"), env.pointee != 0 {
            return Choice(path: String(cString: env), explicit: true)
        }
        if let beside = besideExecutable(), isDirectory(beside) {
            return Choice(path: beside, explicit: false)
        }
        return Choice(path: String(cString: clinux_default_plugin_dir()), explicit: false)
    }

    private static func besideExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let exe = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard let slash = exe.lastIndex(of: "/") else { return nil }
        return exe[..<slash] + "/plugins"
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The names of the entries of a directory, sorted (so plugins load in a stable order).
    static func entries(_ path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            names.append(name)
        }
        return names.sorted()
    }
}

/// Loads framing plugins: every `*.so` in the plugin directory whose name does not start with
/// `backend_`. Their constructors register their functions through `core_register_framing`.
public enum FramingPlugins {
    public static func loadAll(from directory: PluginDirectory.Choice) throws(ConfigError) -> Int {
        guard let names = PluginDirectory.entries(directory.path) else {
            if directory.explicit {
                throw ConfigError("plugins", "cannot read plugin directory \(directory.path): \(String(cString: strerror(errno)))")
            }
            Log.debug("no plugin directory at \(directory.path)")
            return 0
        }
        var loaded = 0
        for name in names where name.hasSuffix(".so") && !name.hasPrefix("backend_") {
            let path = directory.path + "/" + name
            guard dlopen(path, clinux_rtld_now_local()) != nil else {
                throw ConfigError(path, "cannot load framing plugin: \(lastDLError())")
            }
            loaded += 1
            Log.debug("loaded framing plugin \(path)")
        }
        return loaded
    }
}

/// The text of the last dlopen/dlsym error.
func lastDLError() -> String {
    dlerror().map { String(cString: $0) } ?? "unknown error"
}
