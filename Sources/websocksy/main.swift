import Glibc
import WebsocksyCore

// Thin entry point: configuration in, server out, loop until stopped.
let invocation: Invocation
do {
    invocation = try CommandLineParser.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    Log.writeStderr("websocksy: \(error)\n")
    exit(2)
}

switch invocation {
case .help:
    print(CommandLineParser.usage)
case .version:
    print("websocksy \(Version.string) (RFC 6455 version 13, plugin API 1; \(Version.libraries))")
case .run(var configuration):
    Log.level = configuration.logLevel
    configuration.inheritedListener = SocketActivation.inheritedListener()
    do {
        try Supervisor.forkWorkers(&configuration)  // returns in each worker; the supervisor exits
    } catch {
        Log.writeStderr("websocksy: \(error)\n")
        exit(2)
    }
    ProcessSetup.ignoreSIGPIPE()
    let descriptors = ProcessSetup.raiseDescriptorLimit()
    let server: Server
    let plugins = PluginDirectory.resolve(configured: configuration.pluginDirectory)
    let framingPlugins: Int
    do {
        framingPlugins = try FramingPlugins.loadAll(from: plugins)
        let arguments = Array(CommandLine.arguments.dropFirst())
        server = try Server(configuration: configuration, pluginDirectory: plugins.path) { () throws(ConfigError) in
            guard case .run(let fresh) = try CommandLineParser.parse(arguments) else { throw ConfigError("reload", "no configuration") }
            return fresh
        }
        try ProcessSetup.dropPrivileges(to: configuration.user)
    } catch {
        Log.writeStderr("websocksy: \(error)\n")
        exit(2)
    }
    Log.info("websocksy \(Version.string) listening on \(server.listeningAddress) (backend \(configuration.backend), "
             + "\(framingPlugins) framing plugin(s) from \(plugins.path), \(descriptors) descriptors)")
    if descriptors >= 0 && descriptors < 2 * configuration.maxConnections {
        Log.warning("the descriptor limit (\(descriptors)) allows about \(descriptors / 2) bridged connections, "
                    + "fewer than max-connections (\(configuration.maxConnections)); raise it (ulimit -n, LimitNOFILE=)")
    }
    server.run()
}
