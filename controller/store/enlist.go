package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// BMC DHCP enlistment (issue 5): what the controller learned of each BMC
// that took a lease on a BMC subnet, and the node it became.
func init() {
	registerMigration(12, `CREATE TABLE bmc_enlistments (
		bmc_mac TEXT PRIMARY KEY,
		ip TEXT NOT NULL DEFAULT '',
		endpoint TEXT NOT NULL DEFAULT '',
		node TEXT NOT NULL DEFAULT '',
		status TEXT NOT NULL,
		vendor TEXT NOT NULL DEFAULT '',
		model TEXT NOT NULL DEFAULT '',
		serial TEXT NOT NULL DEFAULT '',
		uuid TEXT NOT NULL DEFAULT '',
		bmc_firmware TEXT NOT NULL DEFAULT '',
		host_macs TEXT NOT NULL DEFAULT '[]',
		quirks TEXT NOT NULL DEFAULT '[]',
		message TEXT NOT NULL DEFAULT '',
		failure_class TEXT NOT NULL DEFAULT '',
		attempts INTEGER NOT NULL DEFAULT 0,
		first_seen BIGINT NOT NULL,
		last_seen BIGINT NOT NULL
	);
	CREATE INDEX bmc_enlistments_node ON bmc_enlistments(node)`)
}

// Enlistment states.
const (
	EnlistEnrolled = "enrolled" // surveyed; Node holds it
	EnlistFailed   = "failed"   // the probe or survey failed; retried on a later lease
)

// BMCEnlistment is one BMC seen taking a lease on a BMC subnet.
type BMCEnlistment struct {
	MAC      string    `json:"bmcMAC"`
	IP       string    `json:"ip"`
	Endpoint string    `json:"endpoint,omitempty"` // how the controller reaches it
	Node     string    `json:"node,omitempty"`
	Status   string    `json:"status"`
	Vendor   string    `json:"vendor,omitempty"`
	Model    string    `json:"model,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	UUID     string    `json:"uuid,omitempty"`
	Firmware string    `json:"bmcFirmware,omitempty"`
	HostMACs []string  `json:"hostMACs,omitempty"`
	Quirks   []string  `json:"quirks,omitempty"`
	Message  string    `json:"message,omitempty"` // why it failed, or what disagrees with the manifest
	Class    string    `json:"failureClass,omitempty"`
	Attempts int       `json:"attempts"`
	First    time.Time `json:"firstSeen"`
	Last     time.Time `json:"lastSeen"`
}

const enlistColumns = `bmc_mac, ip, endpoint, node, status, vendor, model, serial, uuid, bmc_firmware, host_macs, quirks,
	message, failure_class, attempts, first_seen, last_seen`

func scanEnlistment(s scanner) (BMCEnlistment, error) {
	var (
		e            BMCEnlistment
		macs, quirks string
		first, last  int64
	)
	if err := s.Scan(&e.MAC, &e.IP, &e.Endpoint, &e.Node, &e.Status, &e.Vendor, &e.Model, &e.Serial, &e.UUID, &e.Firmware,
		&macs, &quirks, &e.Message, &e.Class, &e.Attempts, &first, &last); err != nil {
		return e, err
	}
	if err := json.Unmarshal([]byte(macs), &e.HostMACs); err != nil {
		return e, fmt.Errorf("enlistment %s: stored host MACs are corrupt: %w", e.MAC, err)
	}
	if err := json.Unmarshal([]byte(quirks), &e.Quirks); err != nil {
		return e, fmt.Errorf("enlistment %s: stored quirks are corrupt: %w", e.MAC, err)
	}
	e.First, e.Last = fromMicros(first), fromMicros(last)
	return e, nil
}

// RecordEnlistment stores what one probe of a BMC found (counting the
// attempt; the first sighting is kept) and audits it as bmc.enlist, on the
// node's timeline when there is a node. Never a password: the login that
// worked is stored with SetBMCLogin, sealed.
func (db *DB) RecordEnlistment(ctx context.Context, e BMCEnlistment, actor string) error {
	if e.MAC == "" || e.Status == "" {
		return errors.New("record enlistment: a BMC MAC and a status are required")
	}
	macs, _ := json.Marshal(nonNil(e.HostMACs))
	quirks, _ := json.Marshal(nonNil(e.Quirks))
	now := micros(db.now())
	outcome := "ok"
	if e.Status != EnlistEnrolled {
		outcome = "failed"
	}
	detail := map[string]any{"bmcMAC": e.MAC, "ip": e.IP, "status": e.Status}
	for k, v := range map[string]string{"endpoint": e.Endpoint, "vendor": e.Vendor, "model": e.Model, "serial": e.Serial,
		"uuid": e.UUID, "message": e.Message, "class": e.Class} {
		if v != "" {
			detail[k] = v
		}
	}
	// The row and its audit entry land together, through the group committer.
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, `INSERT INTO bmc_enlistments (`+enlistColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
			ON CONFLICT (bmc_mac) DO UPDATE SET ip = excluded.ip, endpoint = excluded.endpoint, node = excluded.node,
				status = excluded.status, vendor = excluded.vendor, model = excluded.model, serial = excluded.serial,
				uuid = excluded.uuid, bmc_firmware = excluded.bmc_firmware, host_macs = excluded.host_macs,
				quirks = excluded.quirks, message = excluded.message, failure_class = excluded.failure_class,
				attempts = bmc_enlistments.attempts + 1, last_seen = excluded.last_seen`,
			e.MAC, e.IP, e.Endpoint, e.Node, e.Status, e.Vendor, e.Model, e.Serial, e.UUID, e.Firmware,
			string(macs), string(quirks), e.Message, e.Class, now, now)
		if err != nil {
			return fmt.Errorf("record enlistment of BMC %s: %w", e.MAC, err)
		}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "bmc.enlist", Node: e.Node, Outcome: outcome, Detail: detail})
	})
}

// Enlistment returns the enlistment of the BMC with mac, or ErrNotFound.
func (db *DB) Enlistment(ctx context.Context, mac string) (BMCEnlistment, error) {
	e, err := scanEnlistment(db.r.QueryRowContext(ctx, db.q(`SELECT `+enlistColumns+` FROM bmc_enlistments WHERE bmc_mac = ?`), mac))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("enlistment of BMC %s: %w", mac, ErrNotFound)
	}
	return e, err
}

// Enlistments lists every BMC enlistment, by BMC MAC.
func (db *DB) Enlistments(ctx context.Context) ([]BMCEnlistment, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+enlistColumns+` FROM bmc_enlistments ORDER BY bmc_mac`)
	if err != nil {
		return nil, fmt.Errorf("list enlistments: %w", err)
	}
	defer rows.Close()
	out := []BMCEnlistment{}
	for rows.Next() {
		e, err := scanEnlistment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// NodeBySerial finds the node with a system serial (compared without
// regard to case), or ErrNotFound.
func (db *DB) NodeBySerial(ctx context.Context, serial string) (string, error) {
	var name string
	err := db.r.QueryRowContext(ctx, db.q(`SELECT name FROM nodes WHERE LOWER(serial) = LOWER(?) AND serial <> '' ORDER BY name LIMIT 1`), serial).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("no node has serial %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("node by serial %s: %w", serial, err)
	}
	return name, nil
}

// MoveEnlistedBMC changes a node's BMC endpoint from one enlistment put
// there to the address its BMC leased since (audited). A node whose BMC
// someone set to something else is left alone; it reports whether it
// moved.
func (db *DB) MoveEnlistedBMC(ctx context.Context, node, from, to, actor string) (bool, error) {
	if from == "" || to == "" || from == to {
		return false, nil
	}
	moved := false
	err := db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		moved = false
		res, err := db.exec(ctx, tx, `UPDATE nodes SET bmc = ?, updated_at = ? WHERE name = ? AND bmc = ?`, to, micros(db.now()), node, from)
		if err != nil {
			return fmt.Errorf("move BMC of %s: %w", node, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		moved = true
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "node.bmc.move", Node: node, Outcome: "ok",
			Detail: map[string]any{"from": from, "to": to}})
	})
	return moved, err
}
