/// An object that remembers its position in the one `MemberList` holding it.
protocol ListMember: AnyObject {
    var listIndex: Int { get set }
}

/// An unordered list with O(1) removal: the last member moves into the removed one's place.
/// The server keeps its connections and its detached peers in these, for the periodic sweep.
struct MemberList<Member: ListMember> {
    private(set) var members: [Member] = []

    var isEmpty: Bool { members.isEmpty }
    var count: Int { members.count }

    mutating func append(_ member: Member) {
        guard member.listIndex < 0 else { return }
        member.listIndex = members.count
        members.append(member)
    }

    mutating func remove(_ member: Member) {
        let i = member.listIndex
        guard i >= 0, i < members.count, members[i] === member else { return }
        let last = members.removeLast()
        if last !== member {
            members[i] = last
            last.listIndex = i
        }
        member.listIndex = -1
    }

    /// The members now. Iterate this copy (not the list) when a visit may remove members: the
    /// list itself must not be accessed during its own mutation.
    var snapshot: [Member] { members }
}
