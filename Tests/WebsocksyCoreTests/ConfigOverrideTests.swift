import Glibc
import Testing
@testable import WebsocksyCore

/// `websocksy FILE [FLAG]...`: flags over the file, origin tracking, `--print-config` and `--check-config`.
@Suite struct ConfigOverrideTests {
    /// A configuration file with `text`, removed when the test process ends (it lives in /tmp).
    private func file(_ text: String) -> String {
        var template = Array("/tmp/websocksy-config-test-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        precondition(fd >= 0)
        let bytes = Array(text.utf8)
        precondition(write(fd, bytes, bytes.count) == bytes.count)
        close(fd)
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private func rewrite(_ path: String, _ text: String) {
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
    }

    private func run(_ args: [String]) throws -> Configuration {
        guard case .run(let c) = try CommandLineParser.parse(args) else { throw ConfigError("test", "not run") }
        return c
    }

    private func failure(_ args: [String]) -> ConfigError? {
        do {
            _ = try CommandLineParser.parse(args)
            return nil
        } catch {
            return error
        }
    }

    /// The lines of `--print-config` that are settings, without the comments.
    private func settings(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix(";") && !$0.isEmpty }
    }

    private let sample = """
        [core]
        port = 8080
        listen = ::1
        ping = 5
        origin = https://a.example
        origin = https://b.example
        trusted-proxy = 10.0.0.1

        [backend]
        host = tcp://127.0.0.1:1
        protocol = chat
        """

    @Test func flagsOverrideTheFileAndSayWhere() throws {
        let path = file(sample)
        let c = try run([path, "-p", "9001", "--listen", "127.0.0.1", "-c", "host=echo://"])
        #expect(c.port == "9001" && c.listen == "127.0.0.1" && c.pingInterval == 5)
        #expect(c.coreOrigins["port"]?.map(\.label) == ["flag -p"])
        #expect(c.coreOrigins["listen"]?.map(\.label) == ["flag --listen"])
        #expect(c.coreOrigins["ping"]?.map(\.label) == ["\(path):4"])
        #expect(c.coreOrigins["idle-timeout"] == nil)
        // -c comes after the file's [backend] lines; defaultpeer keeps the last host.
        #expect(c.backendOptions.map { "\($0.key)=\($0.value)" } == ["host=tcp://127.0.0.1:1", "protocol=chat", "host=echo://"])
        #expect(c.backendOptions.map(\.origin.label) == ["\(path):10", "\(path):11", "flag -c"])
        #expect(c.backendOptions[2].origin.description == "command line (-c host=echo://)")
        #expect(c.configurationFile == path)
    }

    /// The file's place in the order does not matter: a key late in the file still loses to a flag.
    @Test func flagsWinWhereverTheKeyIsInTheFile() throws {
        let path = file("[backend]\nhost = echo://\n\n[core]\nping = 9\nport = 1\n")
        let c = try run([path, "-k", "3", "-p", "2"])
        #expect(c.pingInterval == 3 && c.port == "2")
        #expect(c.backendOptions.map(\.key) == ["host"])
    }

    @Test func aFlagReplacesTheFilesListsAndFurtherFlagsAddToIt() throws {
        let path = file(sample)
        let c = try run([path, "--origin", "https://c.example/", "--origin", "null"])
        #expect(c.origins == ["https://c.example", "null"])
        #expect(c.coreOrigins["origin"]?.map(\.label) == ["flag --origin", "flag --origin"])
        #expect(c.trustedProxies == ["10.0.0.1"])
        let d = try run([path, "--trusted-proxy", "10.0.0.2"])
        #expect(d.trustedProxies == ["10.0.0.2"] && d.origins == ["https://a.example", "https://b.example"])
        #expect(d.coreOrigins["origin"]?.map(\.label) == ["\(path):5", "\(path):6"])
        // Without a file, flags simply accumulate (as before).
        #expect(try run(["--origin", "https://x", "--origin", "https://y"]).origins == ["https://x", "https://y"])
    }

    @Test func backendFlagReplacesTheFilesBackendWithoutLoadingIt() throws {
        let path = file("[core]\nbackend = not-installed-here\nbackend = neither\n\n[backend]\npath = /srv/routes\n")
        let c = try run([path, "-b", "defaultpeer", "-c", "host=echo://"])
        #expect(c.backend == "defaultpeer" && c.backendOrigin?.label == "flag -b")
        #expect(c.backendOptions.map(\.key) == ["host"] && c.replacedBackends.isEmpty)
        _ = try BackendFactory.make(c)  // would fail if either plugin named by the file were loaded
        // Among flags, websocksy's rule still holds: a replaced backend is kept to be checked.
        let d = try run([path, "-b", "defaultpeer", "-c", "host=echo://", "-b", "other"])
        #expect(d.replacedBackends.map(\.name) == ["defaultpeer"] && d.backendOptions.isEmpty)
        // And within a file too.
        var e = Configuration()
        try IniFile.apply(text: "[core]\nbackend = a\n[backend]\nk = v\n[core]\nbackend = b\n", path: "t.cfg", into: &e)
        #expect(e.replacedBackends.map(\.name) == ["a"] && e.replacedBackends[0].options.map(\.key) == ["k"])
    }

    @Test func optionsForTheFilesBackendBeforeBackendFlagAreAnError() {
        let path = file(sample)
        let error = failure([path, "-c", "port=5", "-b", "other"])
        #expect(error?.location == "command line (-b)")
        #expect(error?.message == "-c port=5 was given for backend defaultpeer of \(path), which -b other replaces without "
                + "loading it; give -c after -b")
    }

    @Test func theFileMustComeFirst() {
        let path = file(sample)
        #expect(failure(["-p", "1", path])?.message == "'\(path)' is not an option; only the first argument can be a configuration file")
        #expect(failure([path, path]) != nil)
        #expect(failure([path, "-p", "70000"])?.location == "command line (-p)")
        #expect(failure(["/nonexistent/x.cfg", "-p", "1"])?.location == "/nonexistent/x.cfg")
    }

    @Test func printAndCheckAreModes() throws {
        let path = file(sample)
        guard case .printConfig(let p) = try CommandLineParser.parse([path, "--print-config", "-p", "1"]) else {
            Issue.record("no print")
            return
        }
        #expect(p.port == "1")
        guard case .checkConfig = try CommandLineParser.parse(["--check-config", "-c", "host=echo://"]) else {
            Issue.record("no check")
            return
        }
        #expect(failure(["--print-config", "--check-config"])?.message == "--print-config and --check-config cannot be combined")
    }

    /// SIGHUP parses the same arguments again: the file's new contents, the same flags on top.
    @Test func reparsingRereadsTheFileUnderTheSameFlags() throws {
        let path = file("[core]\nport = 1\nping = 4\n")
        let args = [path, "-p", "2"]
        #expect(try run(args).port == "2")
        rewrite(path, "[core]\nport = 3\nping = 7\n")
        let again = try run(args)
        #expect(again.port == "2" && again.pingInterval == 7)
    }

    // MARK: --print-config

    @Test func printedConfigurationReadsBackTheSame() throws {
        let path = file(sample + "\nframing = newline\n")
        let first = try run([path, "-p", "9001", "--origin", "https://z.example", "-z", "256", "--tls-only", "-w", "auto",
                             "--buffer-memory", "64M", "--unix-mode", "0600", "-c", "framing-config=lf", "-c", "host=echo://", "-vv"])
        let printed = first.iniText(arguments: [path, "-p", "9001"])
        #expect(printed.contains("; flag -p\nport = 9001\n"))
        #expect(printed.contains("; \(path):4\nping = 5\n"))
        #expect(printed.contains("; default\nmax-message = 16M\n"))
        #expect(printed.contains("; user: not set (default)"))
        #expect(printed.contains("; \(path):10 (replaced by a later host)\nhost = tcp://127.0.0.1:1\n"))
        #expect(printed.contains("; flag -c\nhost = echo://\n"))
        #expect(printed.contains("; log level trace from -v"))
        #expect(printed.contains("compression = 256\n") && printed.contains("workers = auto\n") && printed.contains("unix-mode = 0600\n"))

        let copy = file(printed)
        let second = try run([copy])
        let reprinted = second.iniText(arguments: [copy])
        #expect(settings(reprinted) == settings(printed))
        #expect(second.port == "9001" && second.origins == ["https://z.example"] && second.deflate.minimumSize == 256)
        #expect(second.backendOptions.map(\.value) == first.backendOptions.map(\.value))
        _ = try BackendFactory.make(second)
    }

    /// Every key's printed value (default or not) reads back as the same value, and the keys
    /// printed are exactly the ones --help lists.
    @Test func everyCoreKeyRoundTrips() throws {
        var changed = Configuration()
        for (key, value) in [("ping", "0"), ("max-message", "1000"), ("buffer-memory", "3M"), ("plugins", "/p"),
                             ("max-header-bytes", "2000"), ("user", "nobody"), ("workers", "4"), ("web", "w"),
                             ("access-log", "-"), ("tls-cert", "c.pem"), ("tls-key", "k.pem"), ("tls-ca", "ca.pem"),
                             ("peer-tls-ca", "p.pem"), ("peer-tls-verify", "no"), ("compression", "on"),
                             ("server-no-context-takeover", "yes"), ("trusted-proxy", "::1"), ("origin", "null")] {
            try changed.setCore(key, value, at: .file("t.cfg", line: 1))
        }
        for original in [Configuration(), changed] {
            var copy = Configuration()
            for key in Configuration.coreKeys {
                for value in original.coreValues(key) { try copy.setCore(key, value, at: .file("t.cfg", line: 1)) }
                #expect(copy.coreValues(key) == original.coreValues(key), "\(key)")
            }
        }
        let usage = CommandLineParser.usage
        guard let heading = usage.firstRange(of: "Configuration file keys ([core]):") else {
            Issue.record("no key list in --help")
            return
        }
        let list: Substring = usage[heading.upperBound...].prefix { $0 != "." }
        let separators: Set<Character> = [",", " ", "\n"]
        let listed: [String] = list.split(whereSeparator: { separators.contains($0) }).map { String($0) }
        #expect(Set(listed) == Set(Configuration.coreKeys) && listed.count == Configuration.coreKeys.count)
    }

    @Test(arguments: [("host", "echo://", true), ("framing-config", " ", false), ("k", "a\nb", false), ("[k", "v", false),
                      ("#k", "v", false), (";k", "v", false), ("k", "", true), ("k", "a;b#c=d", true), (" k", "v", false),
                      ("k", "v\t", false)])
    func iniLineLimits(_ input: (String, String, Bool)) {
        #expect(Configuration.fitsIniLine(key: input.0, value: input.1) == input.2)
    }

    @Test func unwritableOptionsAreCommentedNotPrinted() throws {
        let c = try run(["-c", "framing-config= ", "-c", "host=echo://"])
        let printed = c.iniText(arguments: [])
        #expect(printed.contains("; framing-config = ' ' cannot be written in a configuration file"))
        #expect(!settings(printed).contains { $0.hasPrefix("framing-config") })
    }

    // MARK: --check-config and error locations

    @Test func locatingPointsAtTheSetting() throws {
        let path = file("[core]\nweb = /nonexistent\nbackend = gone\n")
        let c = try run([path, "--tls-cert", "/x.pem"])
        #expect(c.locating(ConfigError("web", "cannot use it")).description == "\(path):2: web: cannot use it")
        #expect(c.locating(ConfigError("/x.pem", "unreadable")).description == "command line (--tls-cert): /x.pem: unreadable")
        #expect(c.locating(ConfigError("/lib/backend_gone.so", "cannot load")).description == "\(path):3: /lib/backend_gone.so: cannot load")
        // Defaults and errors not about one setting stay as they are.
        #expect(c.locating(ConfigError("user", "no such user")).description == "user: no such user")
        #expect(c.locating(ConfigError("start-up", "epoll")).description == "start-up: epoll")
    }

    @Test func checkAcceptsAGoodConfiguration() throws {
        try ConfigurationCheck.run(run(["-l", "127.0.0.1", "-p", "0", "-c", "host=echo://", "--access-log", "-",
                                        "--web", "/tmp", "--access-log", "/tmp/websocksy-check-test.log"]))
        // The check does not create the access log.
        #expect(access("/tmp/websocksy-check-test.log", F_OK) != 0)
    }

    @Test(arguments: [
        (["--web", "/nonexistent"], "command line (--web): web: cannot use /nonexistent"),
        (["--tls-cert", "/nonexistent.pem"], "command line (--tls-cert): /nonexistent.pem: cannot load certificate"),
        (["--tls-key", "/k.pem"], "command line (--tls-key): tls-key: is set but tls-cert is not"),
        (["--access-log", "/nonexistent/dir/log"], "command line (--access-log): access-log: cannot create /nonexistent/dir/log"),
        (["--access-log", "/tmp"], "command line (--access-log): access-log: cannot open /tmp: it is a directory"),
        (["-l", "unix:/tmp/x.sock", "-w", "2"], "command line (-w): workers: several workers need a TCP listen address"),
        (["-l", "unix:/nonexistent/x.sock"], "command line (-l): listen: cannot listen on unix:/nonexistent/x.sock"),
        (["-l", "no-such-host.invalid"], "command line (-l): listen: cannot resolve no-such-host.invalid"),
        (["--plugins", "/nonexistent/plugins"], "command line (--plugins): plugins: cannot read plugin directory"),
        (["-c", "colour=red"], "command line (-c colour=red): backend defaultpeer: unknown option 'colour'"),
    ])
    func checkReportsWhereTheProblemIs(_ input: ([String], String)) throws {
        let c = try run(["-c", "host=echo://"] + input.0)
        do {
            try ConfigurationCheck.run(c)
            Issue.record("accepted \(input.0)")
        } catch {
            #expect(error.description.hasPrefix(input.1), "\(error)")
        }
    }

    @Test func checkLoadsTheBackendPlugin() throws {
        var template = Array("/tmp/websocksy-plugins-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { rmdir(directory) }
        let c = try run(["--plugins", directory, "-b", "nosuch"])
        do {
            try ConfigurationCheck.run(c)
            Issue.record("accepted")
        } catch {
            #expect(error.description.hasPrefix("command line (-b): \(directory)/backend_nosuch.so: cannot load backend"))
        }
    }

    @Test func parentDirectory() {
        #expect(ConfigurationCheck.parentDirectory("log") == "." && ConfigurationCheck.parentDirectory("/log") == "/")
        #expect(ConfigurationCheck.parentDirectory("/var/log/ws.log") == "/var/log")
    }
}
