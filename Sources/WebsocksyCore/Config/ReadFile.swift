import Glibc

/// The whole contents of a (small) file, nil when it cannot be read; errno says why.
func readFileBytes(_ path: String) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        bytes += chunk[0..<n]
        if n < chunk.count { return ferror(file) == 0 ? bytes : nil }
    }
}

/// The whole contents of a (small) file as UTF-8 text, nil when it cannot be read.
func readWholeFile(_ path: String) -> String? {
    readFileBytes(path).map { String(decoding: $0, as: UTF8.self) }
}
