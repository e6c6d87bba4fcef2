/// Writes metrics in the Prometheus text exposition format (version 0.0.4): a `# HELP` and a
/// `# TYPE` line per family, then one line per sample. Built once per scrape, off the hot path.
struct PrometheusText {
    private(set) var text = ""

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(Self.escapedHelp(help))\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: String) {
        text += name
        if !labels.isEmpty {
            text += "{" + labels.map { "\($0.0)=\"\(Self.escapedLabel($0.1))\"" }.joined(separator: ",") + "}"
        }
        text += " \(value)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)] = [], _ value: Int) {
        sample(name, labels, String(value))
    }

    /// One gauge or counter family with a single unlabelled sample.
    mutating func single(_ name: String, _ type: String, _ help: String, _ value: Int) {
        family(name, type, help)
        sample(name, [], value)
    }

    /// A histogram family in seconds from one kept in microseconds.
    mutating func histogram(_ name: String, _ help: String, _ histogram: Histogram) {
        family(name, "histogram", help)
        var cumulative = 0
        for (i, bound) in Histogram.bounds.enumerated() {
            cumulative += histogram.counts[i]
            sample(name + "_bucket", [("le", Self.seconds(bound))], cumulative)
        }
        sample(name + "_bucket", [("le", "+Inf")], histogram.count)
        sample(name + "_sum", [], Self.seconds(histogram.sumMicroseconds))
        sample(name + "_count", [], histogram.count)
    }

    /// Microseconds as decimal seconds without floating-point noise ("0.0025", "10").
    static func seconds(_ microseconds: Int) -> String {
        let whole = microseconds / 1_000_000, fraction = microseconds % 1_000_000
        guard fraction != 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }

    /// Label values escape `\`, `"` and line feeds.
    static func escapedLabel(_ value: String) -> String {
        escaped(value, quote: true)
    }

    /// Help text escapes `\` and line feeds.
    static func escapedHelp(_ value: String) -> String {
        escaped(value, quote: false)
    }

    private static func escaped(_ value: String, quote: Bool) -> String {
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"" where quote: out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
