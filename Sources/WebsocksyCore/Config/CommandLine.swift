/// What the command line asks for.
public enum Invocation: Sendable {
    case run(Configuration)
    /// `--print-config`: show the effective configuration as a configuration file, then exit.
    case printConfig(Configuration)
    /// `--check-config`: load and validate everything start-up would (`ConfigurationCheck`), then exit.
    case checkConfig(Configuration)
    case help
    case version
}

/// Parses websocksy's command line: `[CONFIGFILE] [FLAG]...`. A first argument that does not start
/// with '-' is a configuration file (websocksy's one-argument form); the flags after it override it.
/// Flags are `-p -l -k -b -c key=value` (applied in order, so `-c` goes to the backend selected
/// before it), `-v` (repeatable), `-h`, `-V`, long forms of the core keys, `--print-config` and
/// `--check-config`. SIGHUP parses the same arguments again, so a reload re-reads the file and
/// puts the same flags back on top.
public enum CommandLineParser {
    public static func parse(_ arguments: [String]) throws(ConfigError) -> Invocation {
        var config = Configuration()
        var i = 0
        if let file = arguments.first, !file.hasPrefix("-") {
            try IniFile.load(path: file, into: &config)
            i = 1
        }
        var verbosity = 0
        var mode: String?
        func value(for flag: String) throws(ConfigError) -> String {
            i += 1
            guard i < arguments.count else { throw ConfigError("command line", "\(flag) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            let arg = arguments[i]
            let origin = SettingOrigin.flag(arg)
            switch arg {
            case "-h", "--help": return .help
            case "-V", "--version": return .version
            case "-p", "--port": try config.setCore("port", value(for: arg), at: origin)
            case "-l", "--listen": try config.setCore("listen", value(for: arg), at: origin)
            case "-k", "--ping": try config.setCore("ping", value(for: arg), at: origin)
            case "-b", "--backend": try config.setCore("backend", value(for: arg), at: origin)
            case "--max-message": try config.setCore("max-message", value(for: arg), at: origin)
            case "--handshake-timeout": try config.setCore("handshake-timeout", value(for: arg), at: origin)
            case "--plugins": try config.setCore("plugins", value(for: arg), at: origin)
            case "-n", "--user": try config.setCore("user", value(for: arg), at: origin)
            case "-w", "--workers": try config.setCore("workers", value(for: arg), at: origin)
            case "--web", "--access-log", "--trusted-proxy", "--record", "--record-max", "--proxy-protocol-from",
                 "--admin-listen", "--drain-delay", "--max-connections-per-client", "--upgrade-rate", "--upgrade-burst",
                 "--auth-keys", "--auth-secret", "--auth-token", "--auth-issuer", "--auth-audience", "--auth-leeway",
                 "--auth-require-exp", "--auth-basic", "--auth-realm", "--max-programs", "--exec-grace", "--exec-env", "--exec-dir":
                try config.setCore(String(arg.dropFirst(2)), value(for: arg), at: origin)
            case "--max-connections", "--max-header-bytes", "--max-headers", "--idle-timeout", "--shutdown-timeout",
                 "--origin", "--unix-mode":
                try config.setCore(String(arg.dropFirst(2)), value(for: arg), at: origin)
            case "--tls-cert", "--tls-key", "--tls-priority", "--tls-ca", "--peer-tls-ca", "--peer-tls-verify",
                 "--tls-tickets", "--tls-ticket-key":
                try config.setCore(String(arg.dropFirst(2)), value(for: arg), at: origin)
            case "--tls-only", "--tls-verify-client":
                try config.setCore(String(arg.dropFirst(2)), "yes", at: origin)
            case "--connect-timeout": try config.setCore("connect-timeout", value(for: arg), at: origin)
            case "--backend-timeout": try config.setCore("backend-timeout", value(for: arg), at: origin)
            case "--peer-buffer", "--buffer-memory": try config.setCore(String(arg.dropFirst(2)), value(for: arg), at: origin)
            case "-z", "--compression": try config.setCore("compression", value(for: arg), at: origin)
            case "--compression-level", "--server-max-window-bits", "--client-max-window-bits",
                 "--server-no-context-takeover", "--client-no-context-takeover":
                try config.setCore(String(arg.dropFirst(2)), value(for: arg), at: origin)
            case "-c", "--config":
                let option = try value(for: arg)
                guard let equals = option.firstIndex(of: "="), equals != option.startIndex else {
                    throw ConfigError("command line", "-c expects key=value, got '\(option)'")
                }
                config.addBackendOption(String(option[..<equals]), String(option[option.index(after: equals)...]),
                                        at: .flag("\(arg) \(option)", flag: arg))
            case "--print-config", "--check-config":
                if let mode, mode != arg { throw ConfigError("command line", "\(mode) and \(arg) cannot be combined") }
                mode = arg
            default:
                if arg.hasPrefix("-v"), arg.dropFirst().allSatisfy({ $0 == "v" }) {
                    verbosity += arg.count - 1
                } else if arg == "--verbose" {
                    verbosity += 1
                } else if !arg.hasPrefix("-") {
                    throw ConfigError("command line", "'\(arg)' is not an option; only the first argument can be a configuration file")
                } else {
                    throw ConfigError("command line", "unknown option '\(arg)' (see --help)")
                }
            }
            i += 1
        }
        config.logLevel = LogLevel(rawValue: min(LogLevel.info.rawValue + verbosity, LogLevel.trace.rawValue))!
        switch mode {
        case "--print-config": return .printConfig(config)
        case "--check-config": return .checkConfig(config)
        default: return .run(config)
        }
    }

    public static let usage = """
    Usage: websocksy CONFIGFILE [OPTION]...
           websocksy [-p PORT] [-l HOST] [-k SECONDS] [-b BACKEND] [-c KEY=VALUE]... [-v]...

    A WebSocket (RFC 6455) gateway to TCP, UDP and Unix socket peers.

      CONFIGFILE            read settings from an ini file ([core] and [backend] sections);
                            it must be the first argument, and the options after it override
                            it: a flag replaces the file's [core] key (--origin and
                            --trusted-proxy replace the file's list), -c adds backend options
                            after the file's, -b replaces the file's backend and its options
          --print-config    print the effective configuration as a configuration file, with
                            where each setting came from (FILE:LINE, flag, default), and exit
          --check-config    load and check the configuration, TLS files, web root, access log
                            and backend as start-up does, without listening; print
                            "configuration OK" and exit 0, or the error and exit 2
      -p, --port PORT       port to listen on (default \(Configuration.defaultPort); 0 picks a free one)
      -l, --listen HOST     address or host to listen on (default \(Configuration.defaultListen), dual-stack),
                            or unix:PATH for a Unix socket (behind nginx)
          --unix-mode MODE  permissions of a Unix listening socket (default 0660)
      -k, --ping SECONDS    keepalive ping interval; a client silent for another interval after
                            a ping is closed (default \(Configuration.defaultPing), 0 = off)
      -b, --backend NAME    peer discovery backend (default \(Configuration.defaultBackend)); drops the
                            backend options given before it (after a CONFIGFILE, the file's
                            backend is not loaded at all)
          --plugins DIR     where plugins are loaded from (default: WEBSOCKSY_PLUGINS, else
                            plugins/ beside the executable, else the build's lib/websocksy)
      -c, --config KEY=VALUE
                            option for the backend selected so far (repeatable, applied in order,
                            after a CONFIGFILE's [backend] options); of a repeated key, defaultpeer
                            uses the last, a plugin backend gets each in turn
          --max-message SIZE
                            largest message accepted from a client, e.g. 65536, 64k, 16M
                            (default 16M); larger ones are closed with 1009
          --handshake-timeout SECONDS
                            time a client has to complete the upgrade request (default \(Configuration.defaultHandshakeTimeout))
          --connect-timeout SECONDS
                            time connecting to a peer may take before the client gets 502
                            (default \(Configuration.defaultConnectTimeout))
          --backend-timeout SECONDS
                            time a plugin backend's query (run off the event loop) may take
                            before the client gets 504 (default \(Configuration.defaultBackendTimeout))
          --peer-buffer SIZE
                            cap on peer data waiting to be framed (default 1M); a framing
                            function that frames nothing before it is full closes with 1009
          --buffer-memory SIZE
                            budget for messages assembled for echo and datagram peers and echo
                            replies not read (default auto = a quarter of physical memory); over
                            it, the connection holding the most is closed with 1009
      -z, --compression off|on|SIZE
                            accept permessage-deflate from clients that offer it; SIZE =
                            compress only messages of at least SIZE bytes (default off)
          --compression-level N
                            zlib level 1 (fastest) to 9 (default 6)
          --server-max-window-bits N, --client-max-window-bits N
                            largest compression windows, ours (9-15) and the client's (8-15)
                            (default 11 and 11)
          --server-no-context-takeover yes|no, --client-no-context-takeover yes|no
                            compress each message on its own (default no, no)
          --tls-cert FILE   PEM certificate (and chain) for wss://; plain and TLS clients then
                            share the port, told apart by their first byte
          --tls-key FILE    PEM private key (default: read from the certificate file)
          --tls-only        refuse plain (non-TLS) connections
          --tls-priority STRING
                            GnuTLS priority string (default: TLS 1.2 and 1.3 only)
          --tls-ca FILE     CA certificates for client certificates
          --tls-verify-client
                            require a client certificate signed by tls-ca
          --tls-tickets yes|no
                            session tickets, so returning clients resume (default yes)
          --tls-ticket-key FILE
                            64 bytes that seal tickets, shared by a fleet (default: random
                            per process)
          --peer-tls-ca FILE
                            CA certificates for tls:// peers (default: the system trust store)
          --peer-tls-verify yes|no
                            check tls:// peers' certificates and names (default yes)
          --max-connections N
                            clients beyond N get 503 (default \(Configuration.defaultMaxConnections))
          --max-header-bytes SIZE, --max-headers N
                            limits of the upgrade request, else 431 (default 16k, 100)
          --idle-timeout SECONDS
                            close connections without a data message either way for this
                            long (default 0 = never)
          --shutdown-timeout SECONDS
                            on SIGTERM, how long to wait for close handshakes (default 5)
          --origin ORIGIN   allow only handshakes with this Origin (repeatable), e.g.
                            https://example.com; null admits file:// pages; others get 403
          --web DIR         serve files from DIR to plain GET/HEAD requests on the same port
                            (without it they get a short 426 page)
          --access-log FILE one line per connection when it ends (- = stderr); SIGUSR1 reopens
          --trusted-proxy ADDR
                            a proxy (repeatable) whose X-Forwarded-For / X-Real-IP give the
                            access log's fwd= field
          --proxy-protocol-from ADDR|CIDR
                            a load balancer (repeatable) whose connections may start with a
                            PROXY protocol v1 or v2 header; the client address it carries is
                            the one logged, limited and passed on. From other sources a PROXY
                            header gets 400
          --admin-listen HOST:PORT
                            serve /metrics (Prometheus), /healthz and /readyz (503 once a
                            graceful stop begins) there (default: off)
          --drain-delay SECONDS
                            after SIGTERM, keep serving this long with /readyz answering 503,
                            so balancers take the gateway out first; then stop (default 0)
          --max-connections-per-client N
                            open connections one client address may hold; beyond, 429
                            (default 0 = no limit)
          --upgrade-rate N, --upgrade-burst N
                            WebSocket upgrades per second one client address may make, with
                            bursts of up to N (default 0 = no limit, burst 20); beyond, 429
                            with Retry-After
          --auth-keys FILE  require a signed token (JWT) on every upgrade, verified with these
                            public keys: PEM blocks or a JWKS document (RS*, PS*, ES*, EdDSA)
          --auth-secret FILE
                            the same with an HMAC secret (HS256/384/512) read from FILE
          --auth-token LIST where tokens are looked for, in order (default
                            query:token, cookie:token, bearer); protocol:PREFIX takes a
                            Sec-WebSocket-Protocol entry PREFIXTOKEN (never echoed)
          --auth-issuer ISS, --auth-audience AUD[,AUD...]
                            the token's iss must be ISS, its aud one of the AUDs
          --auth-leeway SECONDS
                            clock difference tolerated on exp and nbf (default 30)
          --auth-require-exp yes|no
                            refuse tokens without exp (default yes)
          --auth-basic FILE htpasswd file (bcrypt, SHA-crypt, yescrypt) guarding the web root
                            and upgrades with HTTP basic authentication
          --auth-realm TEXT realm named in WWW-Authenticate (default websocksy)
          --max-programs N  exec:// programs running at once (default 256); beyond, 503
          --exec-grace SECONDS
                            after a program's client leaves (EOF on its stdin), wait this long
                            before SIGTERM, and again before SIGKILL (default 5)
          --exec-env NAME[,NAME...]
                            variables of the gateway's environment passed to programs (default
                            none; PATH is set to /usr/local/bin:/usr/bin:/bin unless listed)
          --exec-dir DIR    programs' working directory (default: the program's own)
          --record DIR      record every session (data messages both ways, with times) into
                            a file of its own in DIR, mode 0600; read it with websocksy-replay;
                            off = no recording (default); routes may override (record=DIR|off)
          --record-max SIZE largest recording per session (default 64M); past it the file
                            ends with a "capped" record
      -n, --user NAME       when started as root, drop to this user after binding
      -w, --workers N       worker processes sharing the port, each with its own event loop
                            (default 1; auto = one per core); a supervisor restarts a worker
                            that dies and forwards signals
      -v, --verbose         log more (repeat for more detail)
      -h, --help            show this help
      -V, --version         show the version

    defaultpeer backend options (-c KEY=VALUE or the [backend] section):
      host                  peer address: tcp://HOST[:PORT], tls://HOST[:PORT],
                            udp://HOST[:PORT], unix://PATH, unix-dgram://PATH (@NAME is an
                            abstract socket), or echo://, which sends every message back
                            unchanged; IPv6 literals in brackets
      port                  peer port when the host has none
      framing               how bytes from the peer are cut into messages (default auto):
                            auto, binary, separator, newline, mqtt, or a plugin's framing
      framing-config        its configuration: the separator (escapes \\r \\t \\n \\0 \\f \\\\ \\xHH)
                            for separator; crlf (default), lfcr, lf or cr for newline
      protocol              subprotocol to select: unset = serve only clients offering none,
                            * = the first offered, NAME = NAME when offered
      service               PATH,PEER[,MODE[,LINE-END]] (repeatable): one service per request
                            path (wsgw's model); MODE binary (default), text (a line end added
                            to client messages, peer lines without it) or auto (text with
                            ?encoding=text); LINE-END lf (default), crlf, cr or lfcr
      proxy-protocol        v2: each stream peer first gets a PROXY protocol v2 header naming
                            the client; off (default)

    Configuration file keys ([core]): port, listen, ping, max-message, handshake-timeout,
    connect-timeout, backend-timeout, peer-buffer, buffer-memory, plugins, backend, max-connections,
    max-header-bytes, max-headers, idle-timeout, shutdown-timeout, origin, user, unix-mode,
    workers, web, access-log, trusted-proxy, proxy-protocol-from, admin-listen, drain-delay,
    max-connections-per-client, upgrade-rate, upgrade-burst, auth-keys, auth-secret, auth-token, auth-issuer,
    auth-audience, auth-leeway, auth-require-exp, auth-basic, auth-realm, max-programs, exec-grace,
    exec-env, exec-dir, record, record-max, tls-cert, tls-key, tls-only,
    tls-priority, tls-ca, tls-verify-client, tls-tickets, tls-ticket-key, peer-tls-ca, peer-tls-verify,
    compression, compression-level,
    server-max-window-bits, client-max-window-bits, server-no-context-takeover,
    client-no-context-takeover. Timeouts and intervals are whole seconds,
    at most 31536000 (365 days).

    Signals: SIGINT/SIGTERM close every connection with 1001 and exit; SIGHUP reloads the
    configuration (re-reading CONFIGFILE and applying the same options on top), the TLS
    certificate and the auth-keys, auth-secret and auth-basic files for new connections; SIGUSR1 reopens the access log.
    """
}
