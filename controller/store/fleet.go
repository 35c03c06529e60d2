package store

// Migration 8: what a fleet of thousands of nodes and several controllers
// sharing one PostgreSQL need.
//   - rack_leases: each rack is driven by one controller at a time, the
//     holder of an unexpired lease row (see ha.go).
//   - indexes for the lifecycle's hot writes, whose cost would otherwise
//     grow with the fleet: the next attempt number of a step, and the MAC
//     index rows of one node (replaced at enrolment).
func init() {
	registerMigration(8, `CREATE TABLE rack_leases (
		rack TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		expires_at BIGINT NOT NULL,
		acquired_at BIGINT NOT NULL,
		renewed_at BIGINT NOT NULL,
		epoch BIGINT NOT NULL DEFAULT 1
	);
	CREATE INDEX steps_attempt ON steps(node, step, attempt);
	CREATE INDEX node_macs_node ON node_macs(node);`)
}
