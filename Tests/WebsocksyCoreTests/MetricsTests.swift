import Testing
@testable import WebsocksyCore

@Suite struct PrometheusFormat {
    @Test func histogramBucketsAreCumulativeInSeconds() {
        var h = Histogram()
        h.observe(microseconds: 400)        // ≤ 0.5 ms
        h.observe(microseconds: 500)        // on the bound: still ≤ 0.0005
        h.observe(microseconds: 3_000)      // ≤ 5 ms
        h.observe(microseconds: 60_000_000) // above every bound
        var out = PrometheusText()
        out.histogram("x_seconds", "Help.", h)
        let lines = out.text.split(separator: "\n").map(String.init)
        #expect(lines[0] == "# HELP x_seconds Help.")
        #expect(lines[1] == "# TYPE x_seconds histogram")
        #expect(lines[2] == "x_seconds_bucket{le=\"0.0005\"} 2")
        #expect(lines[3] == "x_seconds_bucket{le=\"0.001\"} 2")
        #expect(lines[5] == "x_seconds_bucket{le=\"0.005\"} 3")
        #expect(lines.contains("x_seconds_bucket{le=\"10\"} 3"))
        #expect(lines.contains("x_seconds_bucket{le=\"+Inf\"} 4"))
        #expect(lines.contains("x_seconds_sum 60.0039"))
        #expect(lines.last == "x_seconds_count 4")
    }

    @Test func secondsAreWrittenWithoutFloatingPointNoise() {
        #expect(PrometheusText.seconds(0) == "0")
        #expect(PrometheusText.seconds(2_500) == "0.0025")
        #expect(PrometheusText.seconds(1_000_000) == "1")
        #expect(PrometheusText.seconds(1_000_001) == "1.000001")
    }

    @Test func labelValuesAndHelpAreEscaped() {
        var out = PrometheusText()
        out.family("m", "counter", "a \\ b\nc \"q\"")
        out.sample("m", [("path", "a\"b\\c\nd")], 3)
        #expect(out.text == "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m counter\nm{path=\"a\\\"b\\\\c\\nd\"} 3\n")
    }
}

@Suite struct AdminAnswers {
    private func answer(_ line: String, ready: Bool = true) -> String {
        String(decoding: AdminRoutes.respond(to: line[...], ready: ready) { "m 1\n" }, as: UTF8.self)
    }

    @Test func routes() {
        #expect(answer("GET /healthz HTTP/1.1").hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(answer("GET /healthz HTTP/1.1").hasSuffix("\r\n\r\nok\n"))
        #expect(answer("GET /readyz HTTP/1.0").hasPrefix("HTTP/1.1 200 "))
        #expect(answer("GET /readyz HTTP/1.1", ready: false).hasPrefix("HTTP/1.1 503 "))
        #expect(answer("GET /metrics?x=1 HTTP/1.1").contains("Content-Type: text/plain; version=0.0.4"))
        #expect(answer("GET /metrics HTTP/1.1").hasSuffix("\r\n\r\nm 1\n"))
        #expect(answer("GET /other HTTP/1.1").hasPrefix("HTTP/1.1 404 "))
    }

    @Test func headHasNoBodyButTheLength() {
        let head = answer("HEAD /healthz HTTP/1.1")
        #expect(head.contains("Content-Length: 3\r\n"))
        #expect(head.hasSuffix("\r\n\r\n"))
    }

    @Test func refusals() {
        #expect(answer("POST /metrics HTTP/1.1").hasPrefix("HTTP/1.1 405 "))
        #expect(answer("POST /metrics HTTP/1.1").contains("Allow: GET, HEAD\r\n"))
        #expect(answer("GET /metrics").hasPrefix("HTTP/1.1 400 "))
        #expect(answer("GET  /metrics HTTP/1.1").hasPrefix("HTTP/1.1 400 "))
        #expect(answer("GET /metrics SPDY/3").hasPrefix("HTTP/1.1 400 "))
    }
}
