import Glibc
import WebsocksyCore

// Thin entry point: configuration in, server out, loop until stopped.
let arguments = Array(CommandLine.arguments.dropFirst())
let invocation: Invocation
do {
    invocation = try CommandLineParser.parse(arguments)
} catch {
    Log.writeStderr("websocksy: \(error)\n")
    exit(2)
}

/// A configuration error after parsing ends the process with status 2 (the supervisor does not
/// restart a worker that exits so), pointing at the file line or flag behind it where it can.
func fail(_ error: ConfigError, _ configuration: Configuration) -> Never {
    Log.writeStderr("websocksy: \(configuration.locating(error))\n")
    exit(2)
}

switch invocation {
case .help:
    print(CommandLineParser.usage)
case .version:
    print("websocksy \(Version.string) (RFC 6455 version 13, plugin API 1; \(Version.libraries))")
case .printConfig(let configuration):
    print(configuration.iniText(arguments: arguments), terminator: "")
case .checkConfig(let configuration):
    Log.level = configuration.logLevel
    do {
        try ConfigurationCheck.run(configuration)
    } catch {
        fail(error, configuration)
    }
    print("configuration OK")
case .run(var configuration):
    Log.level = configuration.logLevel
    configuration.inheritedListener = SocketActivation.inheritedListener()
    do {
        try Supervisor.forkWorkers(&configuration)  // returns in each worker; the supervisor exits
    } catch {
        fail(error, configuration)
    }
    ProcessSetup.ignoreSIGPIPE()
    let descriptors = ProcessSetup.raiseDescriptorLimit()
    let server: Server
    let plugins = PluginDirectory.resolve(configured: configuration.pluginDirectory)
    let framingPlugins: Int
    do {
        framingPlugins = try FramingPlugins.loadAll(from: plugins)
        // SIGHUP: the same arguments parsed again, so the file is re-read and the same flags
        // override it again.
        server = try Server(configuration: configuration, pluginDirectory: plugins.path) { () throws(ConfigError) in
            guard case .run(let fresh) = try CommandLineParser.parse(arguments) else { throw ConfigError("reload", "no configuration") }
            return fresh
        }
        try ProcessSetup.dropPrivileges(to: configuration.user)
    } catch {
        fail(error, configuration)
    }
    Log.info("websocksy \(Version.string) listening on \(server.listeningAddress) (backend \(configuration.backend), "
             + "\(framingPlugins) framing plugin(s) from \(plugins.path), \(descriptors) descriptors)")
    if descriptors >= 0 && descriptors < 2 * configuration.maxConnections {
        Log.warning("the descriptor limit (\(descriptors)) allows about \(descriptors / 2) bridged connections, "
                    + "fewer than max-connections (\(configuration.maxConnections)); raise it (ulimit -n, LimitNOFILE=)")
    }
    server.run()
}
