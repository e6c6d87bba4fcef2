import Glibc
import Testing
@testable import WebsocksyCore

@Suite struct ConfigurationTests {
    private func run(_ args: [String]) throws -> Configuration {
        guard case .run(let c) = try CommandLineParser.parse(args) else { throw ConfigError("test", "not run") }
        return c
    }

    @Test func defaults() throws {
        let c = try run([])
        #expect(c.port == "8001" && c.listen == "::" && c.pingInterval == 30 && c.backend == "defaultpeer")
        #expect(c.maxMessage == 16 << 20 && c.logLevel == .info)
    }

    @Test func flagsInOrder() throws {
        let c = try run(["-p", "9000", "-l", "127.0.0.1", "-k", "0", "-c", "host=echo://", "-vv", "--max-message", "64k"])
        #expect(c.port == "9000" && c.listen == "127.0.0.1" && c.pingInterval == 0 && c.maxMessage == 65536)
        #expect(c.backendOptions.map(\.key) == ["host"])
        #expect(c.logLevel == .trace)
    }

    @Test func backendFlagDropsEarlierOptions() throws {
        let c = try run(["-c", "host=echo://", "-b", "other", "-c", "path=/tmp", "-c", "a=b=c"])
        #expect(c.backend == "other")
        #expect(c.backendOptions.map(\.key) == ["path", "a"])
        #expect(c.backendOptions[1].value == "b=c")
    }

    @Test func helpAndVersion() throws {
        guard case .help = try CommandLineParser.parse(["-h"]) else { Issue.record("no help"); return }
        guard case .version = try CommandLineParser.parse(["--version"]) else { Issue.record("no version"); return }
    }

    @Test(arguments: [["-x"], ["-p"], ["-p", "70000"], ["-k", "-1"], ["-c", "novalue"], ["-c", "=v"], ["--max-message", "12q"]])
    func badFlags(_ args: [String]) {
        #expect(throws: ConfigError.self) { _ = try CommandLineParser.parse(args) }
    }

    @Test func iniFile() throws {
        var c = Configuration()
        try IniFile.apply(text: """
            ; comment
            # another
            [core]
            port = 8080
            listen=127.0.0.1
            ping = 5

            [backend]
            host = echo://
            protocol = *
            """, path: "t.cfg", into: &c)
        #expect(c.port == "8080" && c.listen == "127.0.0.1" && c.pingInterval == 5)
        #expect(c.backendOptions.map(\.key) == ["host", "protocol"])
        #expect(c.backendOptions[0].origin.description == "t.cfg:9")
    }

    @Test(arguments: [
        ("[core]\nport = 80\nbogus = 1\n", "t.cfg:3: unknown [core] key 'bogus'"),
        ("port = 1\n", "t.cfg:1: 'port' is outside any section ([core] or [backend])"),
        ("[core]\n\nport 80\n", "t.cfg:3: expected 'key = value', got 'port 80'"),
        ("[cor]\n", "t.cfg:1: unknown section [cor] (expected [core] or [backend])"),
        ("[core\n", "t.cfg:1: malformed section header '[core'"),
        ("[core]\nport = x\n", "t.cfg:2: port must be 0–65535, not 'x'"),
    ])
    func iniErrorsNameFileAndLine(_ input: (String, String)) {
        var c = Configuration()
        do {
            try IniFile.apply(text: input.0, path: "t.cfg", into: &c)
            Issue.record("accepted \(input.0)")
        } catch {
            #expect(error.description == input.1)
        }
    }

    @Test func unreadableFile() {
        #expect(throws: ConfigError.self) { _ = try CommandLineParser.parse(["/nonexistent/websocksy.cfg"]) }
    }

    @Test func backendOptionErrorsNameTheirOrigin() {
        var c = Configuration()
        c.addBackendOption("colour", "red", at: .file("x.cfg", line: 7))
        do {
            _ = try BackendFactory.make(c)
            Issue.record("accepted")
        } catch {
            #expect(error.location == "x.cfg:7")
        }
    }

    @Test func defaultPeerNeedsAHost() {
        #expect(throws: ConfigError.self) { _ = try BackendFactory.make(Configuration()) }
        var c = Configuration()
        c.addBackendOption("host", "gopher://x", at: .flag("-c host=gopher://x"))
        #expect(throws: ConfigError.self) { _ = try BackendFactory.make(c) }
    }

    /// Huge timeouts used to trap in `Limits` (seconds × 1000) at start-up or on the first client.
    @Test(arguments: [["--handshake-timeout", "9999999999999999"], ["--handshake-timeout", "9223372036854775"],
                      ["--connect-timeout", "31536001"], ["--shutdown-timeout", "9223372036854775807"],
                      ["--idle-timeout", "-1"], ["-k", "99999999999"], ["--max-connections", "9223372036854775807"],
                      ["--max-headers", "100000"], ["--max-message", "2048G"], ["--buffer-memory", "1k"], ["--buffer-memory", "lots"]])
    func outOfRangeNumbersAreRefused(_ args: [String]) {
        #expect(throws: ConfigError.self) { _ = try CommandLineParser.parse(args) }
    }

    @Test func rangeErrorsNameFileLineAndRange() {
        var c = Configuration()
        do {
            try IniFile.apply(text: "[core]\nidle-timeout = 9223372036854775\n", path: "t.cfg", into: &c)
            Issue.record("accepted")
        } catch {
            #expect(error.description == "t.cfg:2: idle-timeout must be a number of seconds from 0 to 31536000 (365 days), not '9223372036854775'")
        }
        do {
            try IniFile.apply(text: "[core]\nmax-message = 100\n", path: "t.cfg", into: &c)
            Issue.record("accepted")
        } catch {
            #expect(error.description == "t.cfg:2: max-message must be a size from 125 to 1024G (e.g. 65536, 64k, 16M), not '100'")
        }
    }

    @Test func largestValuesWork() throws {
        let c = try run(["--handshake-timeout", "31536000", "--idle-timeout", "31536000", "-k", "31536000",
                         "--shutdown-timeout", "31536000", "--connect-timeout", "31536000"])
        let limits = Limits(c)
        #expect(limits.handshakeTimeoutMilliseconds == 31_536_000_000 && limits.idleTimeoutMilliseconds == 31_536_000_000)
    }

    /// A configuration built in code skips the parser; `Limits` still cannot overflow.
    @Test func limitsClampWhatTheParserWouldRefuse() {
        var c = Configuration()
        c.handshakeTimeout = .max
        c.pingInterval = .min
        c.peerBuffer = .max
        let limits = Limits(c)
        #expect(limits.handshakeTimeoutMilliseconds == Int64(Configuration.maxSeconds) * 1000)
        #expect(limits.pingIntervalMilliseconds == 0 && limits.peerBufferBytes == .max)
    }

    @Test func bufferMemory() throws {
        #expect(try run([]).bufferMemory == 0)
        #expect(try run(["--buffer-memory", "auto"]).bufferMemory == 0)
        let c = try run(["--buffer-memory", "64M"])
        #expect(c.bufferMemory == 64 << 20 && Limits(c).bufferMemoryBytes == 64 << 20)
        var ini = Configuration()
        try IniFile.apply(text: "[core]\nbuffer-memory = 2G\n", path: "t.cfg", into: &ini)
        #expect(ini.bufferMemory == 2 << 30)
        // auto: a quarter of physical memory.
        let physical = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
        #expect(Limits(Configuration()).bufferMemoryBytes == physical / 4)
    }

    @Test func byteSizes() {
        #expect(ByteSize.parse("100") == 100)
        #expect(ByteSize.parse("64k") == 65536)
        #expect(ByteSize.parse("16M") == 16 << 20)
        #expect(ByteSize.parse("1G") == 1 << 30)
        #expect(ByteSize.parse("k") == nil)
        #expect(ByteSize.parse("99999999999999999999G") == nil)
        #expect(ByteSize.format(125) == "125" && ByteSize.format(4096) == "4k" && ByteSize.format(1 << 30) == "1G")
        #expect(ByteSize.format(1 << 40) == "1024G" && ByteSize.format(3 << 20) == "3M")
    }
}

@Suite struct ExampleConfigTests {
    /// Every file users are told to copy must load and configure its backend.
    @Test(arguments: ["config/echo.cfg", "config/vnc.cfg", "config/lines.cfg", "config/tls.cfg"])
    func exampleLoads(_ path: String) throws {
        var c = Configuration()
        try IniFile.load(path: path, into: &c)
        _ = try BackendFactory.make(c)
    }
}
