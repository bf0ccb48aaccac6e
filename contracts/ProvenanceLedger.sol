// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ProvenanceLedger
/// @notice Anchors the checkpoints of provenance agents' append-only RFC 9162 Merkle logs.
///         A consortium of governors approves agents by m-of-n quorum; only an agent inside its
///         active window may anchor, and every new checkpoint must carry a consistency proof from
///         the previous one, so no agent can rewrite its own history.
/// @dev Gas: one new storage slot per checkpoint (the root) plus a third of a slot for its size and
///      time (three 80-bit entries per slot); the manifest CID only travels in the event.
contract ProvenanceLedger {
    // ------------------------------------------------------------------ types

    enum Action {
        AddAgent,
        RevokeAgent,
        AddGovernor,
        RemoveGovernor,
        SetQuorum
    }

    struct Proposal {
        Action action;
        address target;
        uint32 approvals;
        uint32 epoch;
        bool executed;
        address proposer;
        uint40 createdAt;
        uint64 quorum;
        string name;
    }

    /// @dev One slot: the active window, in block times and block numbers. `anchor` only reads
    ///      it; the checkpoint count is not stored (a checkpoint exists exactly when its root slot
    ///      is set), which saves every anchor a storage write.
    struct AgentRecord {
        uint40 approvedAt;
        uint40 revokedAt;
        uint40 approvedBlock;
        uint40 revokedBlock;
    }

    struct SnapshotAnchor {
        bytes32 stateRoot;
        address agent;
        uint40 timestamp;
        uint48 checkpointIndex;
        bytes cid;
    }

    // ------------------------------------------------------------------ errors

    error NotGovernor(address account);
    error NotActiveAgent(address account);
    error ZeroAddress();
    error EmptyName();
    error NameTooLong(uint256 length, uint256 maxLength);
    error AgentAlreadyRegistered(address agent);
    error AgentNotActive(address agent);
    error AlreadyGovernor(address account);
    error NotAGovernor(address account);
    error InvalidQuorum(uint256 quorum, uint256 governorCount);
    error UnknownProposal(uint256 proposalId);
    error ProposalAlreadyExecuted(uint256 proposalId);
    error ProposalStale(uint256 proposalId);
    error AlreadyApproved(uint256 proposalId, address governor);
    error QuorumNotReached(uint256 proposalId, uint256 approvals, uint256 quorum);
    error SizeNotIncreasing(uint256 previousSize, uint256 newSize);
    error CheckpointExists(address agent, uint256 index);
    error CheckpointMissing(address agent, uint256 index);
    error ZeroRoot();
    error SizeTooLarge(uint256 size);
    error InvalidConsistencyProof(uint256 previousSize, uint256 newSize);
    error InvalidCid();
    error NoCheckpoints(address agent);
    error UnknownCheckpoint(address agent, uint256 index);
    error NoCheckpointAtOrBefore(address agent, uint256 timestamp);
    error UnknownSnapshot(bytes32 resourceId, uint256 index);
    error NoSnapshotAtOrBefore(bytes32 resourceId, uint256 timestamp);

    // ------------------------------------------------------------------ events

    event ProposalCreated(
        uint256 indexed proposalId,
        address indexed proposer,
        Action action,
        address target,
        uint256 quorum,
        string name
    );
    event ProposalApproved(uint256 indexed proposalId, address indexed governor, uint256 approvals);
    event ProposalExecuted(uint256 indexed proposalId);
    event AgentAdded(address indexed agent, string name);
    event AgentRevoked(address indexed agent);
    event GovernorAdded(address indexed governor);
    event GovernorRemoved(address indexed governor);
    event QuorumChanged(uint256 previousQuorum, uint256 newQuorum);
    event Anchored(
        address indexed agent,
        uint256 indexed index,
        uint256 size,
        bytes32 root,
        bytes manifestCid
    );
    event SnapshotAnchored(
        bytes32 indexed resourceId,
        address indexed agent,
        uint256 index,
        bytes cid,
        bytes32 stateRoot,
        uint256 checkpointIndex
    );

    // ------------------------------------------------------------------ state

    uint256 public constant MAX_NAME_LENGTH = 128;
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice Block at which this ledger was deployed: indexers start following events here.
    uint256 public immutable deploymentBlock;

    address[] private _governors;
    mapping(address => uint256) private _governorSlot; // index in _governors + 1; 0 = not a governor
    uint256 public quorum;
    /// @notice Bumped whenever a governor is removed, so approvals given by a removed governor
    ///         on pending proposals can never count toward a quorum.
    uint32 public governanceEpoch;

    uint256 public proposalCount;
    mapping(uint256 => Proposal) private _proposals;
    mapping(uint256 => mapping(address => bool)) private _approvedBy;

    address[] private _agentList;
    mapping(address => AgentRecord) private _agents;
    mapping(address => string) private _agentNames;

    mapping(address => mapping(uint256 => bytes32)) private _roots;
    /// @dev Three checkpoints per slot; entry = size << 40 | timestamp (80 bits).
    mapping(address => mapping(uint256 => uint256)) private _checkpointMeta;

    mapping(bytes32 => SnapshotAnchor[]) private _snapshots;

    // ------------------------------------------------------------------ setup

    constructor(address[] memory initialGovernors, uint256 initialQuorum) {
        for (uint256 i = 0; i < initialGovernors.length; i++) {
            _addGovernor(initialGovernors[i]);
        }
        if (initialQuorum == 0 || initialQuorum > _governors.length) {
            revert InvalidQuorum(initialQuorum, _governors.length);
        }
        quorum = initialQuorum;
        deploymentBlock = block.number;
    }

    modifier onlyGovernor() {
        if (_governorSlot[msg.sender] == 0) revert NotGovernor(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ governance

    function proposeAddAgent(address agent, string calldata name) external onlyGovernor returns (uint256) {
        _checkAddAgent(agent, name);
        return _propose(Action.AddAgent, agent, 0, name);
    }

    function proposeRevokeAgent(address agent) external onlyGovernor returns (uint256) {
        _checkRevokeAgent(agent);
        return _propose(Action.RevokeAgent, agent, 0, "");
    }

    function proposeAddGovernor(address account) external onlyGovernor returns (uint256) {
        _checkAddGovernor(account);
        return _propose(Action.AddGovernor, account, 0, "");
    }

    function proposeRemoveGovernor(address account) external onlyGovernor returns (uint256) {
        _checkRemoveGovernor(account);
        return _propose(Action.RemoveGovernor, account, 0, "");
    }

    function proposeSetQuorum(uint256 newQuorum) external onlyGovernor returns (uint256) {
        _checkQuorum(newQuorum, _governors.length);
        return _propose(Action.SetQuorum, address(0), newQuorum, "");
    }

    /// @notice Approve a pending proposal; it executes in the same call once the quorum is met.
    function approve(uint256 proposalId) external onlyGovernor {
        Proposal storage p = _pending(proposalId);
        if (_approvedBy[proposalId][msg.sender]) revert AlreadyApproved(proposalId, msg.sender);
        _approvedBy[proposalId][msg.sender] = true;
        p.approvals += 1;
        emit ProposalApproved(proposalId, msg.sender, p.approvals);
        if (p.approvals >= quorum) _execute(proposalId, p);
    }

    /// @notice Execute a proposal whose approvals already meet the quorum (useful after the
    ///         quorum was lowered while it was pending).
    function execute(uint256 proposalId) external onlyGovernor {
        Proposal storage p = _pending(proposalId);
        if (p.approvals < quorum) revert QuorumNotReached(proposalId, p.approvals, quorum);
        _execute(proposalId, p);
    }

    function _propose(Action action, address target, uint256 newQuorum, string memory name)
        private
        returns (uint256 proposalId)
    {
        proposalId = ++proposalCount;
        Proposal storage p = _proposals[proposalId];
        p.action = action;
        p.target = target;
        p.epoch = governanceEpoch;
        p.proposer = msg.sender;
        p.createdAt = uint40(block.timestamp);
        p.quorum = uint64(newQuorum);
        p.name = name;
        emit ProposalCreated(proposalId, msg.sender, action, target, newQuorum, name);
        // The proposer's own approval counts toward the quorum.
        _approvedBy[proposalId][msg.sender] = true;
        p.approvals = 1;
        emit ProposalApproved(proposalId, msg.sender, 1);
        if (p.approvals >= quorum) _execute(proposalId, p);
    }

    function _pending(uint256 proposalId) private view returns (Proposal storage p) {
        if (proposalId == 0 || proposalId > proposalCount) revert UnknownProposal(proposalId);
        p = _proposals[proposalId];
        if (p.executed) revert ProposalAlreadyExecuted(proposalId);
        if (p.epoch != governanceEpoch) revert ProposalStale(proposalId);
    }

    function _execute(uint256 proposalId, Proposal storage p) private {
        p.executed = true;
        Action action = p.action;
        address target = p.target;
        if (action == Action.AddAgent) {
            _checkAddAgent(target, p.name);
            _agents[target] = AgentRecord({
                approvedAt: uint40(block.timestamp),
                revokedAt: 0,
                approvedBlock: uint40(block.number),
                revokedBlock: 0
            });
            _agentNames[target] = p.name;
            _agentList.push(target);
            emit AgentAdded(target, p.name);
        } else if (action == Action.RevokeAgent) {
            _checkRevokeAgent(target);
            AgentRecord storage a = _agents[target];
            a.revokedAt = uint40(block.timestamp);
            a.revokedBlock = uint40(block.number);
            emit AgentRevoked(target);
        } else if (action == Action.AddGovernor) {
            _checkAddGovernor(target);
            _addGovernor(target);
            emit GovernorAdded(target);
        } else if (action == Action.RemoveGovernor) {
            _checkRemoveGovernor(target);
            _removeGovernor(target);
            governanceEpoch += 1;
            emit GovernorRemoved(target);
        } else {
            uint256 newQuorum = p.quorum;
            _checkQuorum(newQuorum, _governors.length);
            emit QuorumChanged(quorum, newQuorum);
            quorum = newQuorum;
        }
        emit ProposalExecuted(proposalId);
    }

    function _checkAddAgent(address agent, string memory name) private view {
        if (agent == address(0)) revert ZeroAddress();
        if (bytes(name).length == 0) revert EmptyName();
        if (bytes(name).length > MAX_NAME_LENGTH) revert NameTooLong(bytes(name).length, MAX_NAME_LENGTH);
        // A revoked key never comes back: its window is closed for good.
        if (_agents[agent].approvedAt != 0) revert AgentAlreadyRegistered(agent);
    }

    function _checkRevokeAgent(address agent) private view {
        AgentRecord storage a = _agents[agent];
        if (a.approvedAt == 0 || a.revokedAt != 0) revert AgentNotActive(agent);
    }

    function _checkAddGovernor(address account) private view {
        if (account == address(0)) revert ZeroAddress();
        if (_governorSlot[account] != 0) revert AlreadyGovernor(account);
    }

    function _checkRemoveGovernor(address account) private view {
        if (_governorSlot[account] == 0) revert NotAGovernor(account);
        _checkQuorum(quorum, _governors.length - 1);
    }

    function _checkQuorum(uint256 newQuorum, uint256 governorCount) private pure {
        if (newQuorum == 0 || newQuorum > governorCount) revert InvalidQuorum(newQuorum, governorCount);
    }

    function _addGovernor(address account) private {
        if (account == address(0)) revert ZeroAddress();
        if (_governorSlot[account] != 0) revert AlreadyGovernor(account);
        _governors.push(account);
        _governorSlot[account] = _governors.length;
    }

    function _removeGovernor(address account) private {
        uint256 slot = _governorSlot[account];
        uint256 last = _governors.length;
        if (slot != last) {
            address moved = _governors[last - 1];
            _governors[slot - 1] = moved;
            _governorSlot[moved] = slot;
        }
        _governors.pop();
        delete _governorSlot[account];
    }

    // ------------------------------------------------------------------ anchoring

    /// @notice Anchor the caller's checkpoint number `index` (0 for the first) covering the first
    ///         `size` leaves of its log, whose RFC 9162 root is `root`. `proof` is the consistency
    ///         proof from checkpoint `index - 1` (empty for the first). Naming the index makes a
    ///         retried transaction fail with `CheckpointExists` instead of ever applying twice.
    function anchor(
        uint256 index,
        uint256 size,
        bytes32 root,
        bytes calldata manifestCid,
        bytes32[] calldata proof
    ) external {
        AgentRecord memory a = _agents[msg.sender];
        if (a.approvedAt == 0 || a.revokedAt != 0) revert NotActiveAgent(msg.sender);
        if (manifestCid.length == 0 || manifestCid.length > MAX_CID_LENGTH) revert InvalidCid();
        if (root == bytes32(0)) revert ZeroRoot();
        if (size > type(uint40).max) revert SizeTooLarge(size);
        mapping(uint256 => bytes32) storage roots = _roots[msg.sender];
        if (roots[index] != 0) revert CheckpointExists(msg.sender, index);
        if (index == 0) {
            if (size == 0) revert SizeNotIncreasing(0, 0);
            if (proof.length != 0) revert InvalidConsistencyProof(0, size);
        } else {
            bytes32 previousRoot = roots[index - 1];
            if (previousRoot == 0) revert CheckpointMissing(msg.sender, index - 1);
            (uint256 previousSize,) = _meta(msg.sender, index - 1);
            if (size <= previousSize) revert SizeNotIncreasing(previousSize, size);
            if (!_consistent(previousSize, size, previousRoot, root, proof)) {
                revert InvalidConsistencyProof(previousSize, size);
            }
        }

        roots[index] = root;
        uint256 shift = (index % 3) * 80;
        uint256 entry = (size << 40) | block.timestamp;
        if (shift == 0) {
            _checkpointMeta[msg.sender][index / 3] = entry;
        } else {
            _checkpointMeta[msg.sender][index / 3] |= entry << shift;
        }
        emit Anchored(msg.sender, index, size, root, manifestCid);
    }

    /// @notice Anchor a data snapshot of `resourceId` (for example a hash of a location), tied to
    ///         the caller's checkpoint `checkpointIndex` that precedes it.
    function anchorSnapshot(bytes32 resourceId, bytes calldata cid, bytes32 stateRoot, uint256 checkpointIndex)
        external
    {
        AgentRecord memory a = _agents[msg.sender];
        if (a.approvedAt == 0 || a.revokedAt != 0) revert NotActiveAgent(msg.sender);
        if (cid.length == 0 || cid.length > MAX_CID_LENGTH) revert InvalidCid();
        if (_roots[msg.sender][checkpointIndex] == 0) revert UnknownCheckpoint(msg.sender, checkpointIndex);
        SnapshotAnchor[] storage list = _snapshots[resourceId];
        list.push(
            SnapshotAnchor({
                stateRoot: stateRoot,
                agent: msg.sender,
                timestamp: uint40(block.timestamp),
                checkpointIndex: uint48(checkpointIndex),
                cid: cid
            })
        );
        emit SnapshotAnchored(resourceId, msg.sender, list.length - 1, cid, stateRoot, checkpointIndex);
    }

    // ------------------------------------------------------------------ views: governance

    function governors() external view returns (address[] memory) {
        return _governors;
    }

    function isGovernor(address account) external view returns (bool) {
        return _governorSlot[account] != 0;
    }

    function proposal(uint256 proposalId)
        external
        view
        returns (
            Action action,
            address target,
            uint256 newQuorum,
            string memory name,
            address proposer,
            uint256 approvals,
            bool executed,
            bool stale,
            uint256 createdAt
        )
    {
        if (proposalId == 0 || proposalId > proposalCount) revert UnknownProposal(proposalId);
        Proposal storage p = _proposals[proposalId];
        return (
            p.action,
            p.target,
            p.quorum,
            p.name,
            p.proposer,
            p.approvals,
            p.executed,
            !p.executed && p.epoch != governanceEpoch,
            p.createdAt
        );
    }

    function hasApproved(uint256 proposalId, address governor) external view returns (bool) {
        return _approvedBy[proposalId][governor];
    }

    function agents() external view returns (address[] memory) {
        return _agentList;
    }

    function agentInfo(address agent)
        external
        view
        returns (
            string memory name,
            uint256 approvedAt,
            uint256 revokedAt,
            uint256 approvedBlock,
            uint256 revokedBlock,
            uint256 checkpoints,
            uint256 latestSize
        )
    {
        AgentRecord memory a = _agents[agent];
        checkpoints = _count(agent);
        if (checkpoints != 0) (latestSize,) = _meta(agent, checkpoints - 1);
        return (
            _agentNames[agent],
            a.approvedAt,
            a.revokedAt,
            a.approvedBlock,
            a.revokedBlock,
            checkpoints,
            latestSize
        );
    }

    function isActiveAgent(address agent) external view returns (bool) {
        AgentRecord memory a = _agents[agent];
        return a.approvedAt != 0 && a.revokedAt == 0;
    }

    /// @notice Whether `agent` was inside its active window in block `blockNumber`.
    function agentActiveAtBlock(address agent, uint256 blockNumber) external view returns (bool) {
        AgentRecord memory a = _agents[agent];
        if (a.approvedAt == 0 || blockNumber < a.approvedBlock) return false;
        return a.revokedBlock == 0 || blockNumber < a.revokedBlock;
    }

    /// @notice Whether `agent` was inside its active window at `timestamp` (block time, seconds).
    function agentActiveAt(address agent, uint256 timestamp) external view returns (bool) {
        AgentRecord memory a = _agents[agent];
        if (a.approvedAt == 0 || timestamp < a.approvedAt) return false;
        return a.revokedAt == 0 || timestamp < a.revokedAt;
    }

    // ------------------------------------------------------------------ views: checkpoints

    function checkpointCount(address agent) external view returns (uint256) {
        return _count(agent);
    }

    /// @dev Number of checkpoints: the first unset root slot, by exponential then binary search
    ///      (roots are never zero, so a set slot marks an anchored checkpoint).
    function _count(address agent) private view returns (uint256) {
        mapping(uint256 => bytes32) storage roots = _roots[agent];
        if (roots[0] == 0) return 0;
        uint256 hi = 1;
        while (roots[hi] != 0) hi <<= 1;
        uint256 lo = hi >> 1; // roots[lo] is set, roots[hi] is not
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            if (roots[mid] != 0) lo = mid;
            else hi = mid;
        }
        return hi;
    }

    function checkpoint(address agent, uint256 index)
        external
        view
        returns (uint256 size, bytes32 root, uint256 timestamp)
    {
        if (_roots[agent][index] == 0) revert UnknownCheckpoint(agent, index);
        (size, timestamp) = _meta(agent, index);
        root = _roots[agent][index];
    }

    function latestCheckpoint(address agent)
        external
        view
        returns (uint256 index, uint256 size, bytes32 root, uint256 timestamp)
    {
        uint256 count = _count(agent);
        if (count == 0) revert NoCheckpoints(agent);
        index = count - 1;
        (size, timestamp) = _meta(agent, index);
        root = _roots[agent][index];
    }

    /// @notice The last checkpoint anchored at or before `timestamp` (binary search over block times).
    function checkpointAtOrBefore(address agent, uint256 timestamp)
        external
        view
        returns (uint256 index, uint256 size, bytes32 root, uint256 checkpointTime)
    {
        uint256 lo = 0;
        uint256 hi = _count(agent); // search [lo, hi) for the first time > timestamp
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            (, uint256 t) = _meta(agent, mid);
            if (t <= timestamp) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) revert NoCheckpointAtOrBefore(agent, timestamp);
        index = lo - 1;
        (size, checkpointTime) = _meta(agent, index);
        root = _roots[agent][index];
    }

    function _meta(address agent, uint256 index) private view returns (uint256 size, uint256 timestamp) {
        uint256 entry = (_checkpointMeta[agent][index / 3] >> ((index % 3) * 80)) & ((1 << 80) - 1);
        size = entry >> 40;
        timestamp = entry & ((1 << 40) - 1);
    }

    // ------------------------------------------------------------------ views: snapshots

    function snapshotCount(bytes32 resourceId) external view returns (uint256) {
        return _snapshots[resourceId].length;
    }

    function snapshot(bytes32 resourceId, uint256 index) external view returns (SnapshotAnchor memory) {
        SnapshotAnchor[] storage list = _snapshots[resourceId];
        if (index >= list.length) revert UnknownSnapshot(resourceId, index);
        return list[index];
    }

    function snapshotAtOrBefore(bytes32 resourceId, uint256 timestamp)
        external
        view
        returns (uint256 index, SnapshotAnchor memory anchored)
    {
        SnapshotAnchor[] storage list = _snapshots[resourceId];
        uint256 lo = 0;
        uint256 hi = list.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (list[mid].timestamp <= timestamp) lo = mid + 1;
            else hi = mid;
        }
        if (lo == 0) revert NoSnapshotAtOrBefore(resourceId, timestamp);
        index = lo - 1;
        anchored = list[index];
    }

    // ------------------------------------------------------------------ RFC 9162 proofs
    //
    // The proof walks are written in assembly so each node hash is one call to the SHA-256
    // precompile on scratch memory, with no function call or memory growth per step: about a
    // third of the gas of the high-level version, and proofs carry dozens of hashes. Solidity
    // counts any assembly `staticcall` as a state read, so the walks are declared `view`; the
    // precompile is deterministic, and `_pure*` casts the function pointers so the auditor-facing
    // views can be the `pure` functions the interface promises.

    /// @notice RFC 9162 section 2.1.3.2: is `leafHash` the leaf at `index` of the tree of `size`
    ///         leaves with root `root`? Pure, so auditors can run it as an eth_call.
    function verifyInclusion(
        bytes32 leafHash,
        uint256 index,
        uint256 size,
        bytes32[] calldata proof,
        bytes32 root
    ) external pure returns (bool) {
        if (index >= size) return false;
        return _pureInclusion(_inclusionWalk)(leafHash, index, size, proof, root);
    }

    /// @notice RFC 9162 section 2.1.4.2: is the tree (`size2`, `root2`) an append-only extension of
    ///         (`size1`, `root1`)? Equal sizes need an empty proof and equal roots; size 0 is the
    ///         empty tree, whose root is SHA-256 of nothing.
    function verifyConsistency(
        uint256 size1,
        uint256 size2,
        bytes32 root1,
        bytes32 root2,
        bytes32[] calldata proof
    ) external pure returns (bool) {
        if (size2 < size1) return false;
        if (size1 == size2) return proof.length == 0 && root1 == root2;
        if (size1 == 0) return proof.length == 0 && root1 == sha256("");
        return _consistent(size1, size2, root1, root2, proof);
    }

    /// @dev The RFC algorithm for 0 < size1 < size2.
    function _consistent(
        uint256 size1,
        uint256 size2,
        bytes32 root1,
        bytes32 root2,
        bytes32[] calldata proof
    ) private pure returns (bool) {
        if (proof.length == 0) return false;
        return _pureConsistency(_consistencyWalk)(size1, size2, root1, root2, proof);
    }

    /// @dev Inclusion walk for index < size. Node hashes are SHA-256(0x01 || left || right): the
    ///      prefix byte sits at `p`, left at `p + 1`, right at `p + 33`.
    function _inclusionWalk(
        bytes32 leafHash,
        uint256 index,
        uint256 size,
        bytes32[] calldata proof,
        bytes32 root
    ) private view returns (bool ok) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 1)
            let off := proof.offset
            let end := add(off, shl(5, proof.length))
            let fn := index
            let sn := sub(size, 1)
            let r := leafHash
            ok := 1
            for {} lt(off, end) { off := add(off, 32) } {
                if iszero(sn) {
                    ok := 0
                    break
                }
                let c := calldataload(off)
                switch or(and(fn, 1), eq(fn, sn))
                case 0 {
                    mstore(add(p, 1), r)
                    mstore(add(p, 33), c)
                }
                default {
                    mstore(add(p, 1), c)
                    mstore(add(p, 33), r)
                    if iszero(and(fn, 1)) {
                        for {} and(iszero(and(fn, 1)), iszero(iszero(fn))) {} {
                            fn := shr(1, fn)
                            sn := shr(1, sn)
                        }
                    }
                }
                if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                r := mload(0x00)
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            if ok { ok := and(iszero(sn), eq(r, root)) }
        }
    }

    /// @dev Consistency walk for 0 < size1 < size2 and a non-empty proof. When size1 is a power
    ///      of two its root is a node of the new tree and seeds the walk (RFC 9162 step 2).
    function _consistencyWalk(
        uint256 size1,
        uint256 size2,
        bytes32 root1,
        bytes32 root2,
        bytes32[] calldata proof
    ) private view returns (bool ok) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore8(p, 1)
            let off := proof.offset
            let end := add(off, shl(5, proof.length))
            let fr := root1
            if and(size1, sub(size1, 1)) {
                fr := calldataload(off)
                off := add(off, 32)
            }
            let sr := fr
            let fn := sub(size1, 1)
            let sn := sub(size2, 1)
            for {} and(fn, 1) {} {
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            ok := 1
            for {} lt(off, end) { off := add(off, 32) } {
                if iszero(sn) {
                    ok := 0
                    break
                }
                let c := calldataload(off)
                switch or(and(fn, 1), eq(fn, sn))
                case 0 {
                    mstore(add(p, 1), sr)
                    mstore(add(p, 33), c)
                    if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                    sr := mload(0x00)
                }
                default {
                    mstore(add(p, 1), c)
                    mstore(add(p, 33), fr)
                    if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                    fr := mload(0x00)
                    mstore(add(p, 33), sr)
                    if iszero(staticcall(gas(), 0x02, p, 65, 0x00, 0x20)) { revert(0, 0) }
                    sr := mload(0x00)
                    if iszero(and(fn, 1)) {
                        for {} and(iszero(and(fn, 1)), iszero(iszero(fn))) {} {
                            fn := shr(1, fn)
                            sn := shr(1, sn)
                        }
                    }
                }
                fn := shr(1, fn)
                sn := shr(1, sn)
            }
            if ok { ok := and(and(eq(fr, root1), eq(sr, root2)), iszero(sn)) }
        }
    }

    function _pureInclusion(
        function(bytes32, uint256, uint256, bytes32[] calldata, bytes32) internal view returns (bool) walk
    ) private pure returns (function(bytes32, uint256, uint256, bytes32[] calldata, bytes32) internal pure returns (bool) cast) {
        assembly {
            cast := walk
        }
    }

    function _pureConsistency(
        function(uint256, uint256, bytes32, bytes32, bytes32[] calldata) internal view returns (bool) walk
    ) private pure returns (function(uint256, uint256, bytes32, bytes32, bytes32[] calldata) internal pure returns (bool) cast) {
        assembly {
            cast := walk
        }
    }
}
