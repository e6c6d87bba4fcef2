/// The product version, printed by `--version` and in the start-up line.
public enum Version {
    public static let string = "0.1.0"
}
