package bundle

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/rackstrap/rackstrap/controller/api"
	"github.com/rackstrap/rackstrap/controller/store"
	imgstore "github.com/rackstrap/rackstrap/images/store"
)

// Service imports bundles through the controller's API, so that every
// import, and every refusal, is on the audit chain.
type Service struct {
	Dir  string // the artifact store
	Keys *Keyring
	DB   *store.DB
	Log  *slog.Logger
}

// maxUpload caps a bundle streamed to the API.
const maxUpload = MaxEntrySize

// Extension is the bundles API: GET /api/v1/bundles lists imported
// bundles, POST /api/v1/bundles imports the bundle streamed as the request
// body (admin only).
func (s *Service) Extension() api.Extension {
	return api.Extension{
		Name: "bundles",
		Routes: []api.Route{
			{Method: http.MethodGet, Path: "/api/v1/bundles", Perm: api.PermAdmin, Handle: s.list},
			{Method: http.MethodPost, Path: "/api/v1/bundles", Perm: api.PermAdmin, Handle: s.importBundle},
		},
		OpenAPI: []byte(`{"paths":{"/api/v1/bundles":{
"get":{"summary":"Bundles imported into the controller's artifact store","operationId":"listBundles","tags":["bundles"],"responses":{"200":{"description":"import records","content":{"application/json":{"schema":{"type":"array","items":{"$ref":"#/components/schemas/BundleResult"}}}}}}},
"post":{"summary":"Import a signed bundle (the request body, a tar or tar.zst): verified against the trust store and every file's sha256 before anything enters the artifact store; audited","operationId":"importBundle","tags":["bundles"],
"requestBody":{"required":true,"content":{"application/octet-stream":{"schema":{"type":"string","format":"binary"}}}},
"responses":{"200":{"description":"imported (or already imported)","content":{"application/json":{"schema":{"$ref":"#/components/schemas/BundleResult"}}}},"400":{"description":"refused: unsigned, untrusted, tampered, truncated or unsafe"},"409":{"description":"another import is running"}}}}},
"components":{"schemas":{"BundleResult":{"type":"object","properties":{"name":{"type":"string"},"digest":{"type":"string"},"signer":{"type":"string"},"entries":{"type":"integer"},"added":{"type":"integer"},"present":{"type":"integer"},"resumed":{"type":"integer"},"alreadyImported":{"type":"boolean"},"learnedKeys":{"type":"array","items":{"type":"string"}},"imported":{"type":"string"}}}}}}`),
	}
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	recs, err := Imported(s.Dir)
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(recs))
	for _, rec := range recs {
		out = append(out, map[string]any{"name": rec.Name, "digest": rec.Digest, "signer": rec.Signer, "entries": rec.Entries, "imported": rec.Imported})
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) importBundle(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, maxUpload)
	res, err := Import(r.Context(), body, ImportOptions{Dir: s.Dir, Keys: s.Keys, Log: s.Log})
	caller := api.Caller(r)
	if err != nil {
		if aerr := s.DB.Audit(r.Context(), store.AuditInput{Actor: caller, Action: "bundle.refused", Outcome: "refused",
			Detail: map[string]string{"reason": err.Error()}}); aerr != nil {
			return errors.Join(err, aerr)
		}
		switch {
		case errors.Is(err, ErrBusy):
			return api.Errorf(http.StatusConflict, "busy", "wait for the other import to finish", "%v", err)
		case errors.Is(err, imgstore.ErrUnsigned), errors.Is(err, imgstore.ErrBadSignature), errors.Is(err, imgstore.ErrUntrustedKey),
			errors.Is(err, imgstore.ErrDigest), errors.Is(err, ErrTruncated), errors.Is(err, ErrHostile), errors.Is(err, ErrNotBundle):
			return api.Errorf(http.StatusBadRequest, "bundle_refused", "nothing was imported; see the message", "%v", err)
		}
		return fmt.Errorf("import bundle: %w", err)
	}
	if err := s.DB.Audit(r.Context(), store.AuditInput{Actor: caller, Action: "bundle.imported", Outcome: "ok",
		Detail: map[string]any{"name": res.Name, "digest": res.Digest, "signer": res.Signer, "entries": res.Entries, "added": res.Added,
			"alreadyImported": res.AlreadyImported, "learnedKeys": res.Learned}}); err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, res)
}
