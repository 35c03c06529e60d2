package store

import (
	"context"
	"database/sql"
	"fmt"
)

// BMC quirks the controller learned at run time (issue 5): the behaviour a
// BMC of one vendor and model showed (e.g. refusing BootSourceOverrideMode),
// kept so that a restarted controller does not relearn each one through a
// refused first request on a production machine.
func init() {
	registerMigration(17, `CREATE TABLE bmc_learned_quirks (
		vendor TEXT NOT NULL,
		manufacturer TEXT NOT NULL,
		model TEXT NOT NULL,
		product TEXT NOT NULL,
		quirk TEXT NOT NULL,
		bmc TEXT NOT NULL DEFAULT '',
		learned_at BIGINT NOT NULL,
		PRIMARY KEY (vendor, manufacturer, model, product, quirk)
	)`)
}

// LearnedQuirk is one learned behaviour of a BMC model (the identity
// fields as the BMC reports them; see bmc.LearnedQuirk).
type LearnedQuirk struct {
	Vendor       string `json:"vendor,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	Product      string `json:"product,omitempty"`
	Quirk        string `json:"quirk"`
	// BMC is the endpoint it was first seen on.
	BMC string `json:"bmc,omitempty"`
}

// LearnQuirk keeps a learned quirk, audited as bmc.quirk-learned. Learning
// one already kept changes nothing and writes no audit entry.
func (db *DB) LearnQuirk(ctx context.Context, q LearnedQuirk, actor string) error {
	if q.Quirk == "" {
		return fmt.Errorf("learn quirk: no quirk named for %s %s", q.Vendor, q.Model)
	}
	return db.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, `INSERT INTO bmc_learned_quirks (vendor, manufacturer, model, product, quirk, bmc, learned_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			q.Vendor, q.Manufacturer, q.Model, q.Product, q.Quirk, q.BMC, micros(db.now()))
		if err != nil {
			return fmt.Errorf("learn quirk %s of %s %s: %w", q.Quirk, q.Vendor, q.Model, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		detail := map[string]any{"quirk": q.Quirk, "vendor": q.Vendor, "manufacturer": q.Manufacturer, "model": q.Model, "product": q.Product, "bmc": q.BMC}
		return db.appendAudit(ctx, tx, AuditInput{Actor: actor, Action: "bmc.quirk-learned", Outcome: "ok", Detail: detail})
	})
}

// LearnedQuirks lists the kept quirks, by model.
func (db *DB) LearnedQuirks(ctx context.Context) ([]LearnedQuirk, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT vendor, manufacturer, model, product, quirk, bmc FROM bmc_learned_quirks
		ORDER BY vendor, manufacturer, model, product, quirk`)
	if err != nil {
		return nil, fmt.Errorf("list learned quirks: %w", err)
	}
	defer rows.Close()
	var out []LearnedQuirk
	for rows.Next() {
		var q LearnedQuirk
		if err := rows.Scan(&q.Vendor, &q.Manufacturer, &q.Model, &q.Product, &q.Quirk, &q.BMC); err != nil {
			return nil, fmt.Errorf("list learned quirks: %w", err)
		}
		out = append(out, q)
	}
	return out, rows.Err()
}
